"""C, CMA-ES, the dream, and real-env evaluation."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from worldmodels.agent import load_controller
from worldmodels.config import preset, save_config, with_overrides
from worldmodels.data.storage import encode_npz, list_episodes
from worldmodels.dream import (
    Dream,
    DreamEnv,
    any_step_starts,
    build_dream,
    failure_points,
    failure_starts,
)
from worldmodels.errors import WorldModelsError
from worldmodels.es import CMAES
from worldmodels.evaluate import evaluate_real
from worldmodels.models import controller as C
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.train.controller import train_controller
from worldmodels.utils import read_metrics

from .conftest import cli, one_line_error


def test_controller_parameter_counts_and_flat_layout():
    assert C.n_params(32 + 256, 3, True) == 867  # CarRacing: [z, h] -> 3, with bias
    assert C.n_params(64 + 512 + 512, 1, False) == 1088  # Doom: [z, c, h] -> 1, no bias
    params = torch.arange(2 * (3 * 2 + 2), dtype=torch.float32).reshape(2, 8) / 10
    x = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    out = C.act(params, x, 2, True)
    W0, b0 = params[0, :6].reshape(2, 3), params[0, 6:]
    torch.testing.assert_close(out[0], torch.tanh(W0 @ x[0] + b0))
    single = C.Controller(3, 2, True, params[1].numpy())
    torch.testing.assert_close(single(x[1:]), out[1:])


def test_cmaes_maximises_a_simple_function():
    es = CMAES(5, population=16, sigma0=0.5, seed=0)
    for _ in range(150):
        X = es.ask()
        es.tell(-((X - 3.0) ** 2).sum(1))
    np.testing.assert_allclose(es.mean, 3.0, atol=0.05)


def test_cmaes_resume_matches_an_uninterrupted_run(tmp_path):
    def f(X):
        return -((X - 1.0) ** 2).sum(1)

    a = CMAES(4, 8, 0.3, seed=1)
    for _ in range(10):
        a.tell(f(a.ask()))
    b = CMAES(4, 8, 0.3, seed=1)
    for _ in range(4):
        b.tell(f(b.ask()))
    b.save(tmp_path / "es.pkl")
    np.random.seed(123)  # global numpy state must not matter
    b = CMAES.load(tmp_path / "es.pkl")
    for _ in range(6):
        b.tell(f(b.ask()))
    np.testing.assert_array_equal(a.mean, b.mean)


@pytest.fixture
def dream_run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def test_dream_env_passes_the_checker(dream_run):
    env = DreamEnv(build_dream(dream_run, preset("debug"), "cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("starts", ["first", "any"])
def test_batched_and_single_dreams_agree(dream_run, starts):
    cfg = preset("debug")
    dream = build_dream(dream_run, cfg, "cpu", starts=starts)
    in_dim = dream.z_dim + 2 * dream.m.hidden
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.5, (5, C.n_params(in_dim, 1, False))).astype(np.float32)
    seeds = [11, 12, 13, 14, 15]
    returns, lengths = dream.rollout(params, seeds)
    for i in range(5):
        env = DreamEnv(dream)
        obs, _ = env.reset(seed=seeds[i])
        total, steps = 0.0, 0
        while True:
            a = C.act(torch.as_tensor(params[i])[None], torch.as_tensor(obs)[None], 1, False)
            obs, r, terminated, truncated, _ = env.step(a[0].numpy())
            total, steps = total + r, steps + 1
            if terminated or truncated:
                break
        assert (total, steps) == (returns[i], lengths[i])


def test_dream_starts_anywhere_carry_m_memory_of_the_real_episode_up_to_there(dream_run):
    # z = mu exactly where logvar is tiny: then M's memory at step t is M fed mu[:t] and action[:t]
    paths = list_episodes(dream_run / "latents")
    for p in paths:
        d = dict(np.load(p))
        d["logvar"] = np.full_like(d["logvar"], -60.0)
        p.write_bytes(encode_npz(d))
    cfg = with_overrides(preset("debug"), {"controller.dream_starts": "any"})
    m = load_mdnrnn(dream_run / "mdnrnn.pt", cfg, "cpu")
    st = any_step_starts(dream_run, m, 400, seed=3, device=torch.device("cpu"))
    again = any_step_starts(dream_run, m, 400, seed=3, device=torch.device("cpu"))
    assert np.array_equal(st.h, again.h) and np.array_equal(st.steps, again.steps)
    assert (st.steps == 0).any() and (st.steps > 3).any()  # first frames and later ones
    for i in [*range(20), int(np.argmin(st.steps))]:
        d = np.load(paths[st.episodes[i]])
        t = int(st.steps[i])
        assert t < len(d["reward"])
        np.testing.assert_array_equal(st.mu[i], d["mu"][t])
        state = m.initial_state(1)
        with torch.no_grad():
            for k in range(t):
                state = m.advance(torch.as_tensor(d["mu"][k])[None],
                                  torch.as_tensor(d["action"][k])[None], state)  # fmt: skip
        np.testing.assert_allclose(st.h[i], state[0][0, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(st.c[i], state[1][0, 0].numpy(), atol=1e-5)
    # a dream given zero start states is the paper's dream from first frames, rollout for rollout
    plain = build_dream(dream_run, cfg, "cpu")
    zero = Dream(plain.m, plain.adapter, plain.start_mu.numpy(), plain.start_std.square().log().numpy(),
                 plain.spec, start_state=(np.zeros((len(plain.start_mu), m.hidden)),) * 2)  # fmt: skip
    params = np.random.default_rng(1).normal(0, 0.5, (6, plain.z_dim * 1 + 2 * m.hidden))
    a, b = plain.rollout(params, list(range(6))), zero.rollout(params, list(range(6)))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(WorldModelsError, match="dream_starts"):
        with_overrides(cfg, {"mdnrnn.members": 3})


def test_dream_starts_at_failures_are_first_frames_and_places_where_c_lost_ground(dream_run):
    """`failures`: every first frame with zero memory, then (failure_share of all) starts `failure_lead`
    steps before a run of `failure_stretch` steps without a positive reward, or before a bad end, in the
    episodes C played (index >= collect.episodes), with M's memory of the real episode up to there."""
    paths = list_episodes(dream_run / "latents")
    for e, p in enumerate(paths):  # every episode 30 steps; episode e loses ground from step 10 + e
        d = dict(np.load(p))
        d = {k: v[:30] for k, v in d.items()} | {"logvar": np.full_like(d["logvar"][:30], -60.0)}
        d["reward"] = np.ones(30, np.float32)
        d["reward"][10 + e : 10 + e + 5] = 0.0
        d["terminated"] = np.zeros(30, bool)
        d["terminated"][-1] = e >= len(paths) - 2  # the last two episodes end terminated:
        d["reward"][-1] = -100.0 if e == len(paths) - 1 else 1.0  # a bad end, then a finished lap
        p.write_bytes(encode_npz(d))
    (dream_run / "latents" / "starts.npz").unlink()
    C_FROM = 2  # episodes 2.. were "played by C"
    cfg = with_overrides(preset("debug"), {"collect.episodes": C_FROM, "controller.failure_lead": 3,
                                           "controller.failure_stretch": 4,
                                           "controller.dream_starts": "failures"})  # fmt: skip
    episodes, steps = failure_points(paths, C_FROM, stretch=4, lead=3)
    last = len(paths) - 1
    want = [(e, 10 + e - 3) for e in range(C_FROM, len(paths))] + [(last, 29 - 3)]
    assert sorted(zip(episodes.tolist(), steps.tolist(), strict=True)) == sorted(want)
    assert len(failure_points(paths, C_FROM, stretch=6, lead=3)[0]) == 1  # only the bad end
    # where the reward is an alive bonus (DoomTakeCover) every terminated end is a death
    assert len(failure_points(paths, C_FROM, stretch=6, lead=3, alive_bonus=True)[0]) == 2

    m = load_mdnrnn(dream_run / "mdnrnn.pt", cfg, "cpu")
    st = failure_starts(dream_run, cfg, m, torch.device("cpu"))
    n = len(paths)
    assert len(st.mu) == 2 * n  # failure_share 0.5: as many as the first frames
    assert (st.steps[:n] == 0).all() and (st.h[:n] == 0).all() and (st.c[:n] == 0).all()
    doom_deaths = {(last - 1, 29 - 3)}  # the debug preset is DoomTakeCover: the lap-like end counts
    drawn = set(zip(st.episodes[n:].tolist(), st.steps[n:].tolist(), strict=True))
    assert drawn <= set(want) | doom_deaths and len(drawn) > 1
    i = n + int(np.argmax(st.steps[n:]))
    d = np.load(paths[st.episodes[i]])
    np.testing.assert_array_equal(st.mu[i], d["mu"][st.steps[i]])
    state = m.initial_state(1)
    with torch.no_grad():
        for k in range(int(st.steps[i])):
            state = m.advance(torch.as_tensor(d["mu"][k])[None],
                              torch.as_tensor(d["action"][k])[None], state)  # fmt: skip
    np.testing.assert_allclose(st.h[i], state[0][0, 0].numpy(), atol=1e-5)
    # no episode played by C yet (round 0), or a share of 0: the paper's first frames only
    for over in ({"collect.episodes": n}, {"controller.failure_share": 0.0}):
        assert (
            len(failure_starts(dream_run, with_overrides(cfg, over), m, torch.device("cpu")).mu)
            == n
        )
    dream = build_dream(dream_run, cfg, "cpu", starts="failures")
    assert len(dream.start_mu) == 2 * n
    returns, lengths = dream.rollout(np.zeros((4, dream.z_dim + 2 * m.hidden)), list(range(4)))
    assert len(returns) == 4 and (lengths > 0).all()
    with pytest.raises(WorldModelsError, match="failure_share"):
        with_overrides(cfg, {"controller.failure_share": 1.0})


def test_a_fixed_policy_in_the_batched_dream_plays_as_in_the_single_dream(dream_run):
    # experiments.fidelity scores fixed policies this way; the rows still alive are the policy's to act
    dream = build_dream(dream_run, preset("debug"), "cpu")
    seen = []

    def right(alive: torch.Tensor, t: int) -> torch.Tensor:
        seen.append((t, len(alive)))
        return torch.ones(len(alive), 1)

    seeds = [21, 22, 23, 24]
    returns, lengths = dream.rollout(None, seeds, policy=right)
    assert [t for t, _ in seen] == list(range(int(lengths.max())))
    assert [n for _, n in seen] == [int((lengths > t).sum()) for t, _ in seen]
    for i, s in enumerate(seeds):
        env = DreamEnv(dream)
        env.reset(seed=s)
        total, steps, end = 0.0, 0, False
        while not end:
            _, r, terminated, truncated, _ = env.step(np.ones(1, np.float32))
            total, steps, end = total + r, steps + 1, terminated or truncated
        assert (total, steps) == (returns[i], lengths[i])


def test_a_calibrated_done_removes_the_weighted_loss_bias_from_the_odds(dream_run):
    # a done head trained with positive weight w states the odds of death w times too high
    cfg = with_overrides(preset("debug"), {"mdnrnn.done_pos_weight": 4.0})
    ps = []
    for calibrated in (False, True):
        dream = build_dream(
            dream_run, with_overrides(cfg, {"controller.calibrate_done": calibrated})
        )
        env = DreamEnv(dream)
        env.reset(seed=5)
        p = []
        for _ in range(6):
            env.step(np.ones(1, np.float32))
            p.append(dream.last_p_done.item())
        ps.append(np.array(p, np.float64))
    raw, cal = ps
    odds = lambda q: q / (1 - q)  # noqa: E731
    np.testing.assert_allclose(odds(raw) / odds(cal), 4.0, rtol=1e-3)


def test_a_reprojected_dream_puts_each_sampled_z_through_v(dream_run):
    cfg = preset("debug")
    plain = build_dream(dream_run, cfg, "cpu")
    proj = build_dream(dream_run, with_overrides(cfg, {"controller.reproject_z": True}), "cpu")
    envs = [DreamEnv(plain), DreamEnv(proj)]
    for env in envs:
        env.reset(seed=3)
    assert torch.equal(envs[0].z, envs[1].z)  # the same start frame and state
    for env in envs:
        env.step(np.ones(1, np.float32))  # the same randomness: the same raw sample of z
    with torch.no_grad():
        want = proj.vae.encode(proj.vae.decode(envs[0].z))[0]
    torch.testing.assert_close(envs[1].z, want)
    assert not torch.allclose(envs[0].z, envs[1].z, atol=1e-3)
    with pytest.raises(WorldModelsError, match="reproject_z"):
        Dream(plain.m, plain.adapter, np.zeros((1, 8)), np.zeros((1, 8)), proj.spec)


def test_temperature_near_zero_makes_the_dream_nearly_deterministic(dream_run):
    cfg = preset("debug")
    starts = []
    for tau in (1e-4, 1.0):
        dream = build_dream(dream_run, with_overrides(cfg, {"controller.temperature": tau}), "cpu")
        dream.start_std.zero_()
        dream.start_mu[:] = dream.start_mu[0]  # one start frame
        zs = []
        for seed in range(4):
            env = DreamEnv(dream)
            env.reset(seed=seed)
            for _ in range(5):
                env.step(np.zeros(1, np.float32))
            zs.append(env.z[0])
        starts.append(torch.stack(zs).std(0).mean().item())
    assert starts[0] < 1e-2 < starts[1]


def test_train_controller_in_the_dream_resumes_to_the_same_result(dream_run, tmp_path):
    # eval_every=1, so that stopping after generation 1 does the same evaluations as the full run
    cfg = with_overrides(preset("debug"), {"controller.eval_every": 1})
    ref = shutil.copytree(dream_run, tmp_path / "ref")
    for p in ("controller.pt", "es_state.pkl"):
        (ref / p).unlink()
    train_controller(ref, cfg, progress=False)
    # an interrupted run: stop after one generation, then resume
    run = shutil.copytree(dream_run, tmp_path / "resumed")
    for p in ("controller.pt", "es_state.pkl"):
        (run / p).unlink()
    short = with_overrides(cfg, {"controller.generations": 1})
    train_controller(run, short, progress=False)
    (run / "controller.pt").unlink()  # as if killed after the generation's ES state was saved
    train_controller(run, cfg, progress=False)
    np.testing.assert_array_equal(
        load_controller(run / "controller.pt", cfg), load_controller(ref / "controller.pt", cfg)
    )
    rows = [r for r in read_metrics(ref) if r["stage"] == "train-controller"]
    assert {"es/return_mean", "es/return_best", "perf/rollout_steps_per_s"} <= set(rows[-1])
    assert any("es/eval_return" in r for r in rows)


def test_cma_es_can_start_from_a_given_controller(dream_run):
    """iterate.warm_start: CMA-ES searches around the last C, not around 0."""
    x0 = np.linspace(-1, 1, 7)
    es = CMAES(7, 16, 0.01, seed=3, x0=x0)
    np.testing.assert_array_equal(es.mean, x0)
    assert np.abs(es.ask().mean(0) - x0).max() < 0.05
    cfg = with_overrides(preset("debug"), {"controller.generations": 1})
    for p in ("controller.pt", "es_state.pkl"):
        (dream_run / p).unlink()
    in_dim = cfg.vae.z_dim + 2 * cfg.mdnrnn.hidden
    start = np.full(C.n_params(in_dim, 1, False), 0.3, np.float32)
    train_controller(dream_run, cfg, progress=False, x0=start)
    state = CMAES.load(dream_run / "es_state.pkl")
    assert state.generation == 1 and np.abs(state.mean - 0.3).max() < 0.5


def test_real_env_evaluation_is_reproducible_and_random_baseline_works(dream_run):
    cfg = with_overrides(preset("debug"), {"parallel.workers": 1})
    params = load_controller(dream_run / "controller.pt", cfg)
    a = evaluate_real(dream_run, cfg, params, 3, seed=5, progress=False)
    b = evaluate_real(dream_run, cfg, params, 3, seed=5, progress=False)
    assert a["returns"] == b["returns"] and a["episodes"] == 3
    r = evaluate_real(dream_run, cfg, None, 3, seed=5, progress=False)
    assert r["policy"] == "random" and len(r["returns"]) == 3


def test_evaluate_cli_writes_eval_json(dream_run):
    out = cli("evaluate", "--run-dir", str(dream_run), "--episodes", "2", "--seed", "9", "--quiet")
    assert out.returncode == 0, out.stderr
    e = json.loads((dream_run / "eval.json").read_text())
    assert {"env", "episodes", "mean", "std", "returns", "seed"} <= set(e)
    assert e["episodes"] == 2 and e["seed"] == 9 and len(e["returns"]) == 2
    assert f"{e['mean']:.1f} +- {e['std']:.1f}" in out.stdout
    # --out: a second seed's result goes to its own file and the run's eval.json stays the first one's
    other = dream_run / "eval_seed3.json"
    out = cli("evaluate", "--run-dir", str(dream_run), "--episodes", "2", "--seed", "3", "--quiet",
              "--out", str(other))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(other.read_text())["seed"] == 3
    assert json.loads((dream_run / "eval.json").read_text()) == e
    # the seeds and counts of an evaluation are this command's, not the run's settings
    assert json.loads((dream_run / "config.json").read_text())["evaluate"]["seed"] == 1234
    bad = cli("evaluate", "--run-dir", str(dream_run), "--out", str(dream_run / "no" / "e.json"))
    assert bad.returncode != 0 and "--out" in one_line_error(bad)


def test_a_truncated_controller_is_refused(dream_run):
    p = dream_run / "controller.pt"
    p.write_bytes(p.read_bytes()[:100])
    assert "controller.pt" in one_line_error(
        cli("evaluate", "--run-dir", str(dream_run), "--quiet")
    )


def test_train_controller_in_the_real_env_with_workers(dream_run):
    cfg = with_overrides(preset("debug"), {"controller.where": "real", "controller.generations": 2,
                                           "controller.population": 4, "controller.trials": 2,
                                           "controller.eval_every": 2, "controller.eval_rollouts": 2})  # fmt: skip
    for p in ("controller.pt", "es_state.pkl"):
        (dream_run / p).unlink()
    save_config(cfg, dream_run / "config.json")
    row = train_controller(dream_run, cfg, progress=False)
    assert row["es/return_best"] >= row["es/return_mean"] >= row["es/return_worst"] > 0
    assert "es/eval_return" in row
    assert load_controller(dream_run / "controller.pt", cfg).shape == (
        C.n_params(8 + 2 * 16, 1, False),
    )


def test_tensorboard_flag_writes_event_files(dream_run):
    pytest.importorskip("tensorboard")
    for p in ("controller.pt", "es_state.pkl"):
        (dream_run / p).unlink()
    out = cli("train-controller", "--run-dir", str(dream_run), "--tensorboard", "true", "--quiet")
    assert out.returncode == 0, out.stderr
    assert list((dream_run / "tb" / "train-controller").glob("events.out.tfevents.*"))


def test_carracing_dream_scores_by_the_reward_head_and_ends_by_the_done_head():
    """CarRacing's dream: a rollout's return is the sum of M's reward head along its own trajectory (step t's
    reward read after z_t and a_t), recomputed here by one pass of M over the recorded sequence; a done head
    that fires ends every rollout at its first step."""
    from worldmodels.dream import Dream, DreamSpec
    from worldmodels.envs import adapter_for
    from worldmodels.models import build_mdnrnn

    cfg = with_overrides(preset("debug"), {"env.id": "worldmodels/CarRacing-v3", "mdnrnn.reward_head": True,
                                           "controller.use_cell": False, "controller.bias": True})  # fmt: skip
    adapter = adapter_for(cfg.env.id)
    torch.manual_seed(0)
    m = build_mdnrnn(cfg, adapter.action_dim).eval()
    with torch.no_grad():
        m.head.bias[-2] = -20.0  # done logit: never
    Z = cfg.vae.z_dim
    rng = np.random.default_rng(1)
    mu, logvar = rng.standard_normal((4, Z)).astype(np.float32), np.full((4, Z), -3.0, np.float32)
    spec = DreamSpec(temperature=1.0, max_steps=25, use_cell=False, bias=True, alive_reward=False)
    dream = Dream(m, adapter, mu, logvar, spec)
    params = rng.normal(0, 0.5, C.n_params(Z + m.hidden, 3, True)).astype(np.float32)
    returns, lengths = dream.rollout(params[None], [7])
    env = DreamEnv(dream)
    obs, _ = env.reset(seed=7)
    zs, actions, total = [], [], 0.0
    for _ in range(25):
        a = C.act(torch.as_tensor(params)[None], torch.as_tensor(obs)[None], 3, True)
        zs.append(env.z[0].clone())
        actions.append(adapter.controller_to_vector(a)[0])
        obs, r, terminated, truncated, _ = env.step(a[0].numpy())
        total += r
    with torch.no_grad():
        out, _ = m(torch.stack(zs)[None], torch.stack(actions)[None])
    assert lengths[0] == 25 and not terminated and truncated
    assert returns[0] == pytest.approx(total, abs=1e-4)
    assert returns[0] == pytest.approx(float(out.reward[0].sum()), abs=1e-3)
    assert (
        len(set(np.round(out.reward[0].numpy(), 4))) > 20
    )  # a prediction per step, not a constant
    with torch.no_grad():
        m.head.bias[-2] = 20.0  # done logit: always
    _, lengths = dream.rollout(np.repeat(params[None], 3, 0), [1, 2, 3])
    assert lengths.tolist() == [1, 1, 1]


def test_select_real_keeps_the_mean_that_scored_most_in_real_episodes(dream_run, tmp_path):
    """controller.select_real: the dream still trains C; the same real episodes score each periodic mean
    and the kept C is the mean of the generation that scored most there."""
    from worldmodels.config import validate
    from worldmodels.report import _rounds_table
    from worldmodels.utils import read_header

    cfg = with_overrides(preset("debug"), {"controller.eval_every": 1, "controller.generations": 3,
                                           "controller.select_real": 2})  # fmt: skip
    runs = {}
    for n in (1, 2, 3):
        run = shutil.copytree(dream_run, tmp_path / str(n))
        for p in ("controller.pt", "es_state.pkl"):
            (run / p).unlink()
        train_controller(run, with_overrides(cfg, {"controller.generations": n}), progress=False)
        runs[n] = run
    rows = [r for r in read_metrics(runs[3]) if r["stage"] == "train-controller"][
        -3:
    ]  # this search's
    real = [r["es/eval_real_return"] for r in rows]
    assert all("es/eval_return" in r for r in rows)  # the dream's, for the record
    header = read_header(runs[3] / "controller.pt", "controller")
    assert header["eval_where"] == "real" and header["eval_return"] == max(real)
    best = int(np.argmax(real)) + 1  # the first generation of a tie, as a strict > keeps it
    mean = CMAES.load(runs[best] / "es_state.pkl").mean.astype(np.float32)
    np.testing.assert_array_equal(load_controller(runs[3] / "controller.pt", cfg), mean)
    table = _rounds_table(runs[3], cfg, read_metrics(runs[3]))  # the report says what chose C
    assert f"{max(real):.1f} (real episodes chose C)" in table
    with pytest.raises(WorldModelsError, match="select_real needs controller.where dream"):
        validate(with_overrides(cfg, {"controller.where": "real"}))


def test_a_committee_acts_as_the_median_of_its_members_and_one_c_as_itself():
    torch.manual_seed(0)
    out_dim, in_dim, n = 3, 6, 5
    size = C.n_params(in_dim, out_dim, True)
    members = torch.randn(3, size)
    x = torch.randn(n, in_dim)
    each = torch.stack([C.act(m.expand(n, -1), x, out_dim, True) for m in members])
    together = C.act(members.reshape(1, -1).expand(n, -1), x, out_dim, True)
    assert torch.equal(together, each.sort(0).values[1])  # the middle of three, output by output
    assert torch.equal(C.act(members[:1].expand(n, -1), x, out_dim, True), each[0])
    assert (
        C.committee_size(3 * size, in_dim, out_dim, True),
        C.committee_size(size + 1, in_dim, out_dim, True),
    ) == (3, 0)


def test_load_controller_reads_a_committee_end_to_end_and_refuses_one_without_a_middle(tmp_path):
    from worldmodels.agent import members, save_controller
    from worldmodels.envs import adapter_for
    from worldmodels.models import controller_dims

    cfg = preset("debug")
    in_dim, out_dim = controller_dims(cfg, adapter_for(cfg.env.id).controller_outputs)
    size = C.n_params(in_dim, out_dim, cfg.controller.bias)
    rows = np.random.default_rng(0).standard_normal((3, size)).astype(np.float32)
    save_controller(tmp_path / "c.pt", rows, {"finished": True})
    flat = load_controller(tmp_path / "c.pt", cfg)
    assert flat.shape == (3 * size,) and np.array_equal(members(flat, cfg), rows)
    save_controller(tmp_path / "even.pt", rows[:2], {"finished": True})
    with pytest.raises(WorldModelsError, match="committee of 2 has no middle"):
        load_controller(tmp_path / "even.pt", cfg)
    save_controller(tmp_path / "bad.pt", rows[0, :-1], {"finished": True})
    with pytest.raises(WorldModelsError, match=f"needs {size}"):
        load_controller(tmp_path / "bad.pt", cfg)
