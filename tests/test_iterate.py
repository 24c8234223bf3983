"""Iterative training (rounds of collect-with-C, train M further, train C again) and exported agents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli, copy_run, one_line_error
from worldmodels.agent import Agent, load_controller, load_models
from worldmodels.config import agent_temperature, load_config
from worldmodels.data.storage import episode_index, list_episodes, load_episode
from worldmodels.es import CMAES
from worldmodels.rundir import RunDir
from worldmodels.utils import STREAM_ITERATE, read_header, rng_for, seed_for

ROUNDS = ["--iterate.rounds", "2", "--iterate.episodes", "2", "--iterate.eval_episodes", "2",
          "--iterate.final_temperature", "2.0", "--iterate.final_generations", "4",
          "--iterate.final_trials", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def iterated_run(trained_run, tmp_path_factory):
    """The debug run after two rounds of iterative training without exploration (C's own play)."""
    run = copy_run(trained_run, tmp_path_factory.mktemp("iterated") / "run")
    out = cli("iterate", "--run-dir", str(run), "--quiet", *ROUNDS, "--iterate.explore", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    return run


def test_rounds_add_episodes_played_by_the_previous_controller(iterated_run):
    cfg = load_config(iterated_run / "config.json")
    n0 = cfg.collect.episodes
    indices = [episode_index(p) for p in list_episodes(iterated_run / "episodes")]
    assert indices == list(range(n0 + 4))
    assert [episode_index(p) for p in list_episodes(iterated_run / "latents")] == indices
    for r in (1, 2):
        d = iterated_run / "rounds" / str(r)
        assert all((d / f).exists() for f in ("done", "mdnrnn.pt", "controller.pt", "eval.json"))
    # Round 1's episodes were played by the first C with the first M: replaying them gives its actions.
    models = load_models(iterated_run, cfg, mdnrnn=iterated_run / "mdnrnn.pt")
    agent = Agent(models, load_controller(iterated_run / "controller.pt", cfg))
    for index in (n0, n0 + 1):
        ep = load_episode(list_episodes(iterated_run / "episodes")[index])
        agent.reset(seed_for(cfg.seed, STREAM_ITERATE, index))
        replay = [models.adapter.encode_action(agent(o)) for o in ep["obs"]]
        np.testing.assert_array_equal(np.stack(replay), ep["action"])


def test_the_run_agent_is_the_last_round_and_evaluate_says_so(iterated_run):
    cfg = load_config(iterated_run / "config.json")
    m, c = RunDir(iterated_run).agent(cfg)
    assert (m, c) == (iterated_run / "rounds/2/mdnrnn.pt", iterated_run / "rounds/2/controller.pt")
    assert not (iterated_run / "eval.json").exists()  # the old agent's evaluation was removed
    out = cli("evaluate", "--run-dir", str(iterated_run), "--quiet")
    assert out.returncode == 0, out.stderr
    e = json.loads((iterated_run / "eval.json").read_text())
    assert e["agent"] == {"mdnrnn": "rounds/2/mdnrnn.pt", "controller": "rounds/2/controller.pt"}
    # M changed in each round (it was trained further), C was trained again
    m1 = torch.load(iterated_run / "rounds/1/mdnrnn.pt", weights_only=True)["model"]
    m2 = torch.load(m, weights_only=True)["model"]
    assert not torch.equal(m1["head.weight"], m2["head.weight"])
    # The last round's C (the agent) trained at iterate.final_temperature, earlier ones at the run's tau;
    # the agent's dream score is at its own tau.
    tau = [read_header(iterated_run / f"rounds/{r}/controller.pt", "controller")["temperature"]
           for r in (1, 2)]  # fmt: skip
    assert tau == [cfg.controller.temperature, 2.0] and cfg.controller.temperature != 2.0
    # ... and with iterate.final_generations and final_trials (the debug preset's C: 3 generations of 2)
    headers = [
        read_header(iterated_run / f"rounds/{r}/controller.pt", "controller") for r in (1, 2)
    ]
    assert (cfg.controller.generations, cfg.controller.trials) != (4, 3)
    assert [h["generation"] for h in headers] == [cfg.controller.generations, 4]
    assert [h["config"]["controller"]["trials"] for h in headers] == [cfg.controller.trials, 3]
    out = cli("evaluate", "--run-dir", str(iterated_run), "--where", "dream", "--quiet")
    assert out.returncode == 0, out.stderr
    assert json.loads((iterated_run / "eval_dream.json").read_text())["temperature"] == 2.0


def test_evaluate_round_scores_that_rounds_c_with_its_m(iterated_run, tmp_path):
    def evaluate(*extra: str) -> dict:
        out = cli("evaluate", "--run-dir", str(iterated_run), "--quiet", *extra)
        assert out.returncode == 0, out.stderr
        return json.loads(Path(extra[extra.index("--out") + 1]).read_text())

    agent = evaluate("--out", str(tmp_path / "agent.json"))
    last = evaluate("--round", "2", "--out", str(tmp_path / "r2.json"))
    assert last["returns"] == agent["returns"] and last["agent"] == agent["agent"]
    first = evaluate("--round", "0", "--out", str(tmp_path / "r0.json"))
    assert first["agent"] == {"mdnrnn": "mdnrnn.pt", "controller": "controller.pt"}
    r1 = evaluate("--round", "1", "--where", "dream", "--out", str(tmp_path / "r1.json"))
    cfg = load_config(iterated_run / "config.json")
    # round 1's C trained at the run's tau, not the last round's 2.0
    assert r1["agent"]["controller"] == "rounds/1/controller.pt"
    assert r1["temperature"] == cfg.controller.temperature != 2.0
    for args, what in [(["--round", "1"], "--out"), (["--round", "3", "--out", "x.json"], "rounds 0 to 2"),
                       (["--round", "1", "--policy", "random", "--out", "x.json"], "--policy random")]:  # fmt: skip
        out = cli("evaluate", "--run-dir", str(iterated_run), "--quiet", *args)
        assert out.returncode != 0 and what in one_line_error(out), (args, out.stderr)


def test_an_unfinished_round_resumes_without_collecting_again(iterated_run, tmp_path):
    run = copy_run(iterated_run, tmp_path / "run")
    d = run / "rounds" / "2"
    for name in ("done", "controller.pt", "es_state.pkl", "eval.json"):
        (d / name).unlink()
    episodes = {p.name: p.stat().st_mtime_ns for p in list_episodes(run / "episodes")}
    m_before = (d / "mdnrnn.pt").stat().st_mtime_ns
    # Until the last round is done, the run has no agent: a one-line error says what to run.
    line = one_line_error(cli("evaluate", "--run-dir", str(run)))
    assert "iterate" in line
    out = cli("iterate", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in list_episodes(run / "episodes")} == episodes
    assert (d / "mdnrnn.pt").stat().st_mtime_ns == m_before  # the finished M was kept
    assert (d / "done").exists() and (d / "controller.pt").exists()


def test_settings_may_grow_rounds_but_not_change_finished_ones(iterated_run, tmp_path):
    run = copy_run(iterated_run, tmp_path / "run")
    line = one_line_error(cli("iterate", "--run-dir", str(run), "--iterate.explore", "0.5"))
    assert "--iterate.explore" in line and f"`worldmodels iterate --run-dir {run} --force" in line
    out = cli("iterate", "--run-dir", str(run), "--quiet", "--iterate.rounds", "3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "rounds/3/done").exists()
    assert (
        len(list_episodes(run / "episodes"))
        == load_config(run / "config.json").collect.episodes + 6
    )


def test_a_run_stopped_mid_rounds_may_settle_for_the_rounds_it_finished(iterated_run, tmp_path):
    """Started with 3 rounds, stopped in round 3: `--iterate.rounds 2` makes round 2's agent the run's."""
    from worldmodels.config import save_config, with_overrides

    run = copy_run(iterated_run, tmp_path / "run")
    cfg = load_config(run / "config.json")
    save_config(with_overrides(cfg, {"iterate.rounds": 3}), run / "config.json")
    (run / "rounds/3").mkdir()  # round 3 had begun
    out = cli("run", "--run-dir", str(run), "--quiet", "--iterate.rounds", "2")
    assert out.returncode == 0, out.stderr[-2000:]
    e = json.loads((run / "eval.json").read_text())
    assert e["agent"]["controller"] == "rounds/2/controller.pt"


def test_force_iterate_removes_the_rounds_and_their_episodes(iterated_run, tmp_path):
    run = copy_run(iterated_run, tmp_path / "run")
    out = cli(
        "run", "--run-dir", str(run), "--quiet", "--force", "iterate", "--iterate.rounds", "0"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    n0 = load_config(run / "config.json").collect.episodes
    assert not (run / "rounds").exists()
    assert len(list_episodes(run / "episodes")) == n0 == len(list_episodes(run / "latents"))
    assert json.loads((run / "eval.json").read_text())["agent"]["controller"] == "controller.pt"


def test_exploring_agent_hands_over_to_the_random_policy(trained_run):
    cfg = load_config(trained_run / "config.json")
    models = load_models(trained_run, cfg)
    params = load_controller(trained_run / "controller.pt", cfg)
    obs = [np.full((64, 64, 3), i * 3 % 255, np.uint8) for i in range(60)]

    def actions(explore: float) -> list:
        a = Agent(models, params, explore)
        a.reset(5)
        return [a(o) for o in obs]

    random = models.adapter.random_policy(cfg.collect)
    random.reset(rng_for(5, 4))
    assert actions(1.0) == [random(o) for o in obs]  # always exploring: the random policy's actions
    plain = Agent(models, params)
    plain.reset(5)
    assert actions(0.0) == [plain(o) for o in obs]


def test_exported_agent_scores_as_the_run_it_came_from(iterated_run, tmp_path, monkeypatch):
    from worldmodels import pretrained
    from worldmodels.cli import main

    out_dir = tmp_path / "shipped" / "doom"
    assert main(["export", "--run-dir", str(iterated_run), "--out", str(out_dir)]) == 0
    assert not (out_dir / "latents").exists() and (out_dir / "latents_starts.npz").exists()
    prov = json.loads((out_dir / "provenance.json").read_text())
    assert prov["controller"] == "rounds/2/controller.pt"
    assert load_config(out_dir / "config.json").controller.temperature == 2.0  # the agent's tau
    monkeypatch.setattr(pretrained, "ROOT", tmp_path / "shipped")
    for run in (tmp_path / "a", tmp_path / "b"):
        args = ["--episodes", "3", "--seed", "7", "--quiet"]
        assert main(["evaluate", "--pretrained", "doom", "--run-dir", str(run), *args]) == 0
    shipped = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert shipped["returns"] == json.loads((tmp_path / "b" / "eval.json").read_text())["returns"]
    orig = copy_run(iterated_run, tmp_path / "orig")
    assert (
        main(["evaluate", "--run-dir", str(orig), "--episodes", "3", "--seed", "7", "--quiet"]) == 0
    )
    original = json.loads((orig / "eval.json").read_text())
    assert shipped["returns"] == original["returns"] and shipped["lengths"] == original["lengths"]
    assert main(["evaluate", "--pretrained", "doom", "--run-dir", str(tmp_path / "a"), "--where", "dream",
                 "--episodes", "3", "--quiet"]) == 0  # fmt: skip


def test_choose_best_makes_the_best_scoring_round_the_agent(iterated_run, tmp_path):
    """Switched on after the rounds: round 0 (the first C) is scored too, on seeds of the rounds' own; the
    agent follows the scores, and evaluate and export use the chosen round's M and C, and its tau (the
    last round's C trained at iterate.final_temperature, the others at controller.temperature)."""
    from worldmodels.pretrained import export_agent
    from worldmodels.utils import STREAM_ROUND_EVAL

    run = copy_run(iterated_run, tmp_path / "run")
    cfg = load_config(run / "config.json")
    final, tau = cfg.iterate.final_temperature, cfg.controller.temperature
    assert final > 0 and final != tau
    # a round scored on other seeds (as before the rounds had their own stream) is kept aside and replayed
    old = run / "rounds/1/eval.json"
    old.write_text(json.dumps({**json.loads(old.read_text()), "seed": 999}))
    out = cli("iterate", "--run-dir", str(run), "--quiet", "--iterate.choose", "best")
    assert out.returncode == 0, out.stderr[-2000:]
    chosen = json.loads((run / "rounds/chosen.json").read_text())
    means = {int(r): m for r, m in chosen["mean_return"].items()}
    assert sorted(means) == [0, 1, 2] and chosen["rounds"] == 2
    assert means[chosen["round"]] == max(means.values())
    for r in range(3):
        e = json.loads((run / f"rounds/{r}/eval.json").read_text())
        assert e["seed"] == seed_for(cfg.seed, STREAM_ROUND_EVAL, r) != cfg.evaluate.seed
        assert e["mean"] == means[r] and e["episodes"] == 2
    assert json.loads((run / "rounds/1/eval_999_2.json").read_text())["seed"] == 999

    # Make round 1 the best and round 0 the worst: the agent moves with the scores.
    for r, mean in ((0, -1.0), (1, 1e6), (2, 0.0)):
        path = run / f"rounds/{r}/eval.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "mean": mean}))
    (run / "rounds/chosen.json").unlink()
    line = one_line_error(cli("evaluate", "--run-dir", str(run)))  # not chosen yet: no agent
    assert "iterate" in line
    out = cli("run", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = load_config(run / "config.json")
    assert cfg.iterate.choose == "best"
    assert RunDir(run).agent(cfg) == (run / "rounds/1/mdnrnn.pt", run / "rounds/1/controller.pt")
    e = json.loads((run / "eval.json").read_text())
    assert e["agent"] == {"mdnrnn": "rounds/1/mdnrnn.pt", "controller": "rounds/1/controller.pt"}
    assert ">1 (chosen: the agent)<" in (run / "report.html").read_text()
    dream_tau = json.loads((run / "eval_dream.json").read_text())["temperature"]
    assert dream_tau == agent_temperature(cfg, RunDir(run).agent_round(cfg).index) == tau
    export_agent(run, tmp_path / "exported")
    assert load_config(tmp_path / "exported/config.json").controller.temperature == tau
    # The last round best: its C trained at final_temperature, and so is the agent's dream.
    for r, mean in ((1, 0.0), (2, 1e6)):
        path = run / f"rounds/{r}/eval.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "mean": mean}))
    (run / "rounds/chosen.json").unlink()
    assert cli("iterate", "--run-dir", str(run), "--quiet").returncode == 0
    assert agent_temperature(cfg, RunDir(run).agent_round(cfg).index) == final
    export_agent(run, tmp_path / "exported2")
    assert load_config(tmp_path / "exported2/config.json").controller.temperature == final
    # Round 0 best: the first M and C.
    path = run / "rounds/0/eval.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "mean": 2e6}))
    (run / "rounds/chosen.json").unlink()
    out = cli("iterate", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    assert RunDir(run).agent(cfg) == (run / "mdnrnn.pt", run / "controller.pt")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--iterate.choose", "worst"], "iterate.choose must be"),
        (["--iterate.choose", "best", "--iterate.eval_episodes", "0"], "iterate.eval_episodes > 0"),
        (["--iterate.final_searches", "2"], "iterate.eval_episodes > 0"),
        (["--iterate.final_searches", "0"], "iterate.final_searches must be >= 1"),
        (["--iterate.searches", "2"], "iterate.eval_episodes > 0"),
        (["--iterate.searches", "0"], "iterate.searches must be >= 1"),
        (["--iterate.final_vote", "2"], "final_vote must be odd"),
        (["--iterate.final_vote", "3"], "final_vote must be at most the last round's searches"),
    ],
)
def test_choose_refuses_what_it_cannot_do(flags, words, tmp_path):
    out = cli("run", "--preset", "debug", "--run-dir", str(tmp_path / "r"), "--iterate.rounds", "1",
              *flags)  # fmt: skip
    assert words in one_line_error(out)
    assert not (tmp_path / "r").exists()


def test_searches_make_the_best_on_the_rounds_real_episodes_each_rounds_c(trained_run, tmp_path):
    """iterate.searches 2 and final_searches 4: round 1's C searched twice, the last round's four times
    (search j with the run's seed + j, search 0 the one a single search makes), each scored on the same
    real episodes; the best is round 1's C and its score the round's, round 2 collects with round 1's
    chosen C, the last round's C is the committee of its three best (final_vote 3), and a stop anywhere resumes
    to the same choice."""
    from worldmodels.agent import members
    from worldmodels.train.iterate import record_agent_episodes, round_episodes
    from worldmodels.utils import STREAM_ROUND_EVAL

    flags = ["--iterate.episodes", "2", "--iterate.eval_episodes", "2", "--iterate.explore", "0",
             "--quiet"]  # fmt: skip
    one = copy_run(trained_run, tmp_path / "one")
    assert cli("iterate", "--run-dir", str(one), "--iterate.rounds", "1", *flags).returncode == 0
    run = copy_run(trained_run, tmp_path / "run")
    out = cli("iterate", "--run-dir", str(run), "--iterate.rounds", "2", *flags,
              "--iterate.searches", "2", "--iterate.final_searches", "4", "--iterate.final_vote", "3")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = load_config(run / "config.json")
    records = {}
    for r, k in ((1, 2), (2, 4)):
        this = RunDir(run).round(r)
        records[r] = record = json.loads(this.searches.read_text())
        means = {int(j): m for j, m in record["mean_return"].items()}
        assert sorted(means) == list(range(k)) and record["searches"] == k
        assert record["episodes"] == 2
        params = [load_controller(this.searching(j).controller, cfg) for j in range(k)]
        for j in range(k):
            e = json.loads(this.searching(j).eval.read_text())
            assert (e["seed"], e["episodes"], e["mean"]) == (
                seed_for(cfg.seed, STREAM_ROUND_EVAL, r),
                2,
                means[j],
            )
            header = read_header(this.searching(j).controller, "controller")
            assert header["config"]["seed"] == cfg.seed + j
        assert all(not np.array_equal(a, b) for a, b in zip(params, params[1:], strict=False))
        best = record["search"]
        assert means[best] == max(means.values()) and best == min(
            j for j in means if means[j] == means[best]
        )
        if r == 2:  # final_vote 3: the agent is the three searches end to end, checked as one
            top = sorted(sorted(means, key=lambda j: (-means[j], j))[:3])
            assert record["committee"] == top and best in top
            np.testing.assert_array_equal(
                members(load_controller(this.controller, cfg), cfg),
                np.stack([params[j] for j in top]),
            )
            e = json.loads(this.eval.read_text())
            assert e["mean"] == record["committee_return"]
            assert (e["seed"], e["episodes"]) == (seed_for(cfg.seed, STREAM_ROUND_EVAL, r), 2)
            continue
        # the chosen one is the round's C, its score the round's
        assert "committee" not in record
        np.testing.assert_array_equal(load_controller(this.controller, cfg), params[best])
        assert json.loads(this.eval.read_text()) == json.loads(
            this.searching(best).eval.read_text()
        )
    # search 0 is the single search's C
    r1, r2 = RunDir(run).round(1), RunDir(run).round(2)
    np.testing.assert_array_equal(
        load_controller(r1.searching(0).controller, cfg),
        load_controller(one / "rounds/1/controller.pt", cfg),
    )
    # round 2's episodes were played by round 1's chosen C: played again by it, they return the same
    collected = json.loads(r2.collect_record.read_text())["mean_return"]
    again = tmp_path / "again"
    (again / "episodes").mkdir(parents=True)
    shutil.copy(run / "vae.pt", again / "vae.pt")
    replay = record_agent_episodes(again, cfg, round_episodes(cfg, 2), r1.mdnrnn,
                                   load_controller(r1.controller, cfg), progress=False)  # fmt: skip
    assert replay["mean_return"] == collected
    assert RunDir(run).agent(cfg) == (r2.mdnrnn, r2.controller)
    # the report's rounds table names the chosen searches
    assert cli("report", "--run-dir", str(run), "--quiet").returncode == 0
    html = (run / "report.html").read_text()
    assert f"search {records[1]['search']}, the best of 2 on real episodes" in html
    picked = ", ".join(str(j) for j in records[2]["committee"])
    assert f"C is the median of searches {picked} of 4, chosen on real episodes" in html
    # the committee plays as the median of its members: evaluate, the API and an export serve it
    import worldmodels as wm

    assert cli("evaluate", "--run-dir", str(run), "--episodes", "2", "--quiet").returncode == 0
    api = wm.load(run)
    assert api.controller.members == 3
    x = np.random.default_rng(0).standard_normal((4, api.controller.in_dim)).astype(np.float32)
    each = [wm.api.Controller(w, cfg.vae.z_dim, cfg.mdnrnn.hidden, api.controller.out_dim,
                              cfg.controller.use_cell, cfg.controller.bias).act(x)
            for w in members(load_controller(r2.controller, cfg), cfg)]  # fmt: skip
    np.testing.assert_array_equal(api.controller.act(x), np.median(np.stack(each), axis=0))
    assert cli("export", "--run-dir", str(run), "--out", str(tmp_path / "x")).returncode == 0
    assert wm.load(tmp_path / "x").controller.members == 3
    # stopped before the last choice, with search 2 half trained: the rerun retrains it and chooses the same
    chosen = load_controller(r2.controller, cfg)
    for path in (r2.done_marker, r2.searches, r2.controller, r2.eval, r2.searching(2).controller):
        path.unlink()
    assert cli("iterate", "--run-dir", str(run), "--quiet").returncode == 0
    assert json.loads(r2.searches.read_text()) == records[2]
    np.testing.assert_array_equal(load_controller(r2.controller, cfg), chosen)
    # experiments/last_round's copy to train the last C again drops every search's C, state and check
    from experiments.last_round import make_copy

    assert make_copy(run, tmp_path / "copy", {}, keep_search=False) == "last C"
    copy = RunDir(tmp_path / "copy").round(2)
    left = [p.name for p in copy.searches_folder.rglob("*") if p.is_file()]
    assert left == [] and not copy.searches.exists() and not copy.controller.exists()


def test_last_round_experiment_continues_redoes_or_adds_rounds(iterated_run, tmp_path):
    """experiments.last_round makes a row beside a finished run: its last C searched longer from the base's
    CMA-ES state is the same C as a search of that length from the start; rounds can be added; the base
    is left as it was and the copy's episodes are the base's files, hard-linked."""
    import os

    from experiments.last_round import main

    base = copy_run(iterated_run, tmp_path / "base")
    cfg = load_config(base / "config.json")
    base_c = (base / "rounds/2/controller.pt").read_bytes()
    # the base's agent scored on the row's seed list: the copy must score its own agent, not keep this
    (base / "eval_seed99.json").write_text(json.dumps({"mean": -1e9}))
    common = ["--run-dir", str(base), "--seed", "99", "--episodes", "2", "--quiet"]
    longer = ["--set", "iterate.final_generations=6"]
    main([*common, "--out", str(tmp_path / "cont"), *longer, "--continue-search"])
    main([*common, "--out", str(tmp_path / "fresh"), *longer])
    cont, fresh = (tmp_path / name / "rounds/2/controller.pt" for name in ("cont", "fresh"))
    assert read_header(cont, "controller")["generation"] == 6
    np.testing.assert_array_equal(load_controller(cont, cfg), load_controller(fresh, cfg))
    states = [CMAES.load(tmp_path / name / "rounds/2/es_state.pkl") for name in ("cont", "fresh")]
    assert [s.generation for s in states] == [6, 6]
    np.testing.assert_array_equal(states[0].mean, states[1].mean)
    assert (base / "rounds/2/controller.pt").read_bytes() == base_c
    first = list_episodes(base / "episodes")[0]
    assert os.stat(first).st_ino == os.stat(tmp_path / "cont/episodes" / first.name).st_ino
    row = json.loads((tmp_path / "cont/row.json").read_text())
    e = json.loads((tmp_path / "cont/eval_seed99.json").read_text())
    assert (row["seed"], row["episodes"], row["mean"]) == (99, 2, e["mean"]) and e["seed"] == 99
    assert e["agent"] == {"mdnrnn": "rounds/2/mdnrnn.pt", "controller": "rounds/2/controller.pt"}
    assert e["mean"] != -1e9
    assert row["overrides"] == {"iterate.final_generations": 6} and row["train_s"] > 0

    main([*common, "--out", str(tmp_path / "more"), "--set", "iterate.rounds=3"])
    assert (tmp_path / "more/rounds/3/done").exists()
    assert (tmp_path / "more/rounds/2/controller.pt").read_bytes() == base_c
    assert RunDir(tmp_path / "more").agent(load_config(tmp_path / "more/config.json"))[1] == (
        tmp_path / "more/rounds/3/controller.pt"
    )

    # round 2 again whole, collected with a random hand-over at every step: new episodes, the same round 1
    main([*common, "--out", str(tmp_path / "again"), "--set", "iterate.explore=1.0",
          "--from-round", "2"])  # fmt: skip
    again = tmp_path / "again"
    assert (again / "rounds/1/controller.pt").read_bytes() == (
        base / "rounds/1/controller.pt"
    ).read_bytes()
    assert (again / "rounds/2/done").exists()
    n = cfg.collect.episodes + 2 * cfg.iterate.episodes
    assert [episode_index(p) for p in list_episodes(again / "latents")] == list(range(n))
    for index in range(cfg.collect.episodes + cfg.iterate.episodes, n):  # round 2's
        name = f"ep_{index:06d}.npz"
        assert os.stat(again / "episodes" / name).st_ino != os.stat(base / "episodes" / name).st_ino
        a, b = (load_episode(d / "episodes" / name)["action"] for d in (again, base))
        assert a.shape != b.shape or not np.array_equal(a, b)
    assert (base / "rounds/2/controller.pt").read_bytes() == base_c
    assert json.loads((again / "last_round.json").read_text())["trained_again"] == "rounds 2..2"

    bad = ["--out", str(tmp_path / "bad"), "--set", "iterate.final_trials=5", "--continue-search"]
    with pytest.raises(SystemExit, match="--continue-search: only a longer search"):
        main([*common, *bad])
    with pytest.raises(SystemExit, match="--from-round 3: the base has rounds 1..2"):
        main([*common, "--out", str(tmp_path / "bad"), "--from-round", "3"])
    with pytest.raises(SystemExit, match="iterate.nope"):
        main([*common, "--out", str(tmp_path / "bad"), "--set", "iterate.nope=1"])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.tmp").exists()


def test_ensemble_last_round_trains_members_and_the_last_c_in_their_dream(
    iterated_run, tmp_path, capsys
):
    """experiments.ensemble_last_round: member 0 is the base's last M as it is, the others that M trained
    again from the previous round's with other seeds; the table scores every round's C in the ensemble's
    dream, and the last C is trained there again and scored; a second row takes the members it is given."""
    from experiments.ensemble_last_round import main
    from worldmodels.models import MDNRNNEnsemble
    from worldmodels.models.checkpoints import load_mdnrnn

    base = copy_run(iterated_run, tmp_path / "base")
    base_m = (base / "rounds/2/mdnrnn.pt").read_bytes()
    common = ["--run-dir", str(base), "--seed", "99", "--episodes", "2", "--quiet", "--members", "2",
              "--rollouts", "3", "--set", "controller.disagreement_penalty=5"]  # fmt: skip
    main([*common, "--out", str(tmp_path / "ens")])
    cfg = load_config(tmp_path / "ens/config.json")
    assert (cfg.mdnrnn.members, cfg.controller.disagreement_penalty) == (2, 5.0)
    m = load_mdnrnn(tmp_path / "ens/rounds/2/mdnrnn.pt", cfg)
    assert isinstance(m, MDNRNNEnsemble) and len(m.members) == 2
    one = load_mdnrnn(base / "rounds/2/mdnrnn.pt", load_config(base / "config.json"))
    first, second = (dict(x.state_dict()) for x in m.members)
    assert all(torch.equal(first[k], v) for k, v in one.state_dict().items())
    assert not all(torch.equal(second[k], v) for k, v in one.state_dict().items())
    table = json.loads((tmp_path / "ens/disagreement.json").read_text())
    assert [row["c"] for row in table] == ["1", "2"]
    assert all(row["disagreement"] > 0 for row in table)
    assert "summed disagreement" in capsys.readouterr().out
    row = json.loads((tmp_path / "ens/row.json").read_text())
    assert row["seed"] == 99 and row["episodes"] == 2
    assert (base / "rounds/2/mdnrnn.pt").read_bytes() == base_m

    main([*common, "--out", str(tmp_path / "again"), "--members-from", str(tmp_path / "ens")])
    assert not (tmp_path / "again/members").exists()
    assert (tmp_path / "again/rounds/2/mdnrnn.pt").read_bytes() != base_m
    assert json.loads((tmp_path / "again/disagreement.json").read_text()) == table
    with pytest.raises(SystemExit, match="--members must be >= 2"):
        main([*common, "--out", str(tmp_path / "bad"), "--members", "1"])


def test_mixed_collection_adds_a_round_played_by_each_given_controller(iterated_run, tmp_path):
    """experiments.mixed_collection: the added round's episodes are split among the given Cs in order, each
    episode played by its C with the last round's M on the round's own seeds; the round then trains as any
    round does and its C is the agent."""
    from experiments.mixed_collection import main

    base = copy_run(iterated_run, tmp_path / "base")
    cfg = load_config(base / "config.json")
    cs = [base / "controller.pt", base / "rounds/2/controller.pt"]
    out = tmp_path / "mixed"
    common = ["--run-dir", str(base), "--seed", "99", "--episodes", "2", "--quiet"]
    main([*common, "--out", str(out), "--controllers", *map(str, cs)])
    assert (out / "rounds/3/done").exists()
    assert RunDir(out).agent(load_config(out / "config.json"))[1] == out / "rounds/3/controller.pt"
    record = json.loads((out / "mixed_collection.json").read_text())
    first = cfg.collect.episodes + 2 * cfg.iterate.episodes  # round 3's first episode
    assert [c["episodes"] for c in record["controllers"]] == [[first], [first + 1]]
    models = load_models(out, cfg, mdnrnn=out / "rounds/2/mdnrnn.pt")
    for c, index in zip(cs, (first, first + 1)):
        ep = load_episode(out / "episodes" / f"ep_{index:06d}.npz")
        agent = Agent(models, load_controller(c, cfg))
        agent.reset(seed_for(cfg.seed, STREAM_ITERATE, index))
        replay = [models.adapter.encode_action(agent(o)) for o in ep["obs"]]
        np.testing.assert_array_equal(np.stack(replay), ep["action"])
    returns = [c["mean_return"] for c in record["controllers"]]
    sums = [float(load_episode(out / "episodes" / f"ep_{i:06d}.npz")["reward"].sum())
            for i in (first, first + 1)]  # fmt: skip
    assert returns == pytest.approx(sums)
    assert json.loads((out / "row.json").read_text())["seed"] == 99
    with pytest.raises(SystemExit, match="no such controller"):
        main([*common, "--out", str(tmp_path / "bad"), "--controllers", "nope.pt"])
    with pytest.raises(SystemExit, match="3 controllers for 2 episodes"):
        main([*common, "--out", str(tmp_path / "bad"), "--controllers", *map(str, cs), str(cs[0])])
    assert not (tmp_path / "bad").exists()


def test_cross_m_scores_each_run_c_in_each_m_dream(iterated_run, tmp_path, capsys):
    """experiments.cross_m: a C scores the same in the same M's dream whichever run it comes from, each M's
    dream is played (the debug run's survival dream: +1 a step alive, up to the step limit), a correlation
    without spread is said to be none, and a run without a real score on the seed is a one-line error."""
    from experiments.cross_m import main

    base = copy_run(iterated_run, tmp_path / "base")
    steps = load_config(base / "config.json").controller.max_steps
    (base / "eval_seed99.json").write_text(json.dumps({"mean": 1.0}))
    again = copy_run(base, tmp_path / "again")
    (again / "eval_seed99.json").write_text(json.dumps({"mean": 2.0}))
    ms = [base / "rounds/2/mdnrnn.pt", base / "mdnrnn.pt"]
    out = tmp_path / "cross.json"
    main(["--run-dirs", str(base), str(again), "--mdnrnns", *map(str, ms), "--seed", "99",
          "--rollouts", "3", "--out", str(out)])  # fmt: skip
    table = json.loads(out.read_text())
    last, first = (table["dream"][str(m)] for m in ms)
    assert table["real"] == [1.0, 2.0] and last[0] == last[1] and first[0] == first[1]
    assert all(0 < x <= steps for x in last + first)
    assert "dream vs real correlation none (no spread)" in capsys.readouterr().out
    (again / "eval_seed99.json").unlink()
    with pytest.raises(SystemExit, match="no real score on seed 99"):
        main(["--run-dirs", str(base), str(again), "--mdnrnns", str(ms[0]), "--seed", "99"])
