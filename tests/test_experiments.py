"""The experiments stay runnable and share one command line: every module builds its parser, `--help` works,
runs come as --run-dir / --run-dirs / --agent and nothing is positional, and they use the package's public
names only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).parent.parent / "experiments").glob("*.py") if p.stem[0] != "_"
)


def test_every_experiment_is_listed_in_the_index():
    index = importlib.import_module("experiments").__doc__
    assert EXPERIMENTS and all(f"\n{name} " in index for name in EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_has_one_command_line_style(name, capsys):
    from experiments._common import RUN_FLAGS

    module = importlib.import_module(f"experiments.{name}")
    ap = module.build_parser()
    assert ap.prog == f"python -m experiments.{name}"
    flags = [s for a in ap._actions for s in a.option_strings]
    positional = [a.dest for a in ap._actions if not a.option_strings]
    assert positional == [], f"{name}: positional arguments {positional}"
    assert "--quiet" in flags
    runs = [f for f in flags if "run" in f and f not in ("--run-dir", "--run-dirs")]
    assert runs == [], f"{name}: a run is passed as {runs}, not one of {RUN_FLAGS}"
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0 and f"python -m experiments.{name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_uses_public_names_of_the_package(name):
    tree = ast.parse((Path(__file__).parent.parent / "experiments" / f"{name}.py").read_text())
    private = [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worldmodels")
        for a in node.names
        if a.name.startswith("_")
    ]
    assert private == []


@pytest.mark.parametrize("choose, want", [("best", 0.9), ("last", 0.8)])
def test_fidelity_reads_the_agent_rounds_m_statistics(tmp_path, choose, want):
    """A run with rounds logs every round's M validation; the fidelity table's M columns are the agent's
    (round 1 chosen among 2 by `choose best`, the last round otherwise), not the last M trained."""
    import json

    from experiments.fidelity import m_validation
    from worldmodels.config import preset, with_overrides

    cfg = with_overrides(
        preset("debug"), {"iterate.rounds": 2, "iterate.choose": choose, "iterate.eval_episodes": 4}
    )
    (tmp_path / "rounds" / "2").mkdir(parents=True)
    (tmp_path / "rounds" / "2" / "done").write_text("")
    (tmp_path / "rounds" / "chosen.json").write_text(json.dumps({"round": 1, "rounds": 2}))
    rows = [("train-mdnrnn", 1.0), ("iterate-1/train-mdnrnn", 0.9), ("iterate-2/train-mdnrnn", 0.8)]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"stage": s, "mdnrnn/val_nll": v}) + "\n" for s, v in rows)
    )
    assert m_validation(tmp_path, cfg) == {"nll": want}


def test_rows_table_pairs_each_row_with_the_base_and_refuses_other_seeds(tmp_path, capsys):
    import json

    from experiments.rows_table import main

    def write_eval(path, seed, returns):
        path.write_text(json.dumps({"seed": seed, "episodes": len(returns), "returns": returns}))

    def table_of_a_and_b() -> str:
        main(["--run-dirs", str(tmp_path / "a"), str(tmp_path / "b"),
              "--base-eval", str(tmp_path / "base.json")])  # fmt: skip
        return capsys.readouterr().out

    write_eval(tmp_path / "base.json", 99, [800.0, 900.0, 700.0])
    for name, returns, check in (
        ("a", [810.0, 880.0, 760.0], 820.0),
        ("b", [500.0, 900.0, 640.0], 600.0),
    ):
        (tmp_path / name).mkdir()
        write_eval(tmp_path / name / "eval_seed99.json", 99, returns)
        row = {"seed": 99, "best_eval": 850.0, "eval_where": "dream", "round_check": check}
        (tmp_path / name / "row.json").write_text(json.dumps(row))
    out = table_of_a_and_b()
    # a: differences +10, -20, +60 -> mean +16.7, s.e. 23.3; b: -300, 0, -60 -> -120.0, s.e. 91.7
    assert (
        "| a | 850.0 | 820.0 | 816.7 +- 49.2 | 34.8 | +16.7 (s.e. 23.3) | 100 % | 810.0 | 760.0 |"
        in out
    )
    assert "+-120.0" not in out and "-120.0 (s.e. 91.7)" in out
    assert "the row with the best round's check (820.0): a, 816.7 here" in out
    assert (
        "the 2 searches' means: 748.3 on average, std 96.6, median 748.3, from 680.0 to 816.7"
        in out
    )
    # the base's evaluation inside its run directory: its own C counts as a third search
    from worldmodels.agent import save_controller
    from worldmodels.config import preset, save_config

    save_config(preset("debug"), tmp_path / "config.json")
    save_controller(
        tmp_path / "controller.pt", np.zeros(3), {"finished": True, "eval_return": 900.0}
    )
    (tmp_path / "rounds" / "0").mkdir(parents=True)
    (tmp_path / "rounds" / "0" / "eval.json").write_text(json.dumps({"mean": 790.0}))
    out = table_of_a_and_b()
    assert "the 3 searches' means: 765.6 on average" in out
    # dream 900, 850, 850 and checks 790, 820, 600 against real 800, 816.7, 680
    assert "correlation of the best periodic evaluation with the real mean: 0.400" in out
    assert "correlation of the round's check with the real mean: 1.000" in out
    # best of 2 by the check: {base, a} -> a 816.7, {base, b} -> base 800.0, {a, b} -> a 816.7
    assert (
        "the best of 2 by the round's check, over all 3 subsets: 811.1 on average, lowest 800.0"
        in out
    )
    write_eval(tmp_path / "b" / "eval_seed99.json", 7, [1.0, 2.0, 3.0])
    with pytest.raises(SystemExit, match="scored on seed 7 x 3, the base on 99 x 3: not paired"):
        main(["--run-dirs", str(tmp_path / "b"), "--base-eval", str(tmp_path / "base.json")])


def test_drive_stats_reads_grass_around_the_car_and_not_the_car():
    from experiments.drive_stats import PATCHES, grass_share

    PATCH = PATCHES["paper"]

    road = np.full((2, 64, 64, 3), 105, np.uint8)  # grey road everywhere
    road[1, PATCH[0], PATCH[1]] = (102, 204, 102)  # the second frame: grass all around the car
    road[:, 51:55, 30:33] = (204, 0, 0)  # the red car, on both
    assert grass_share(road).tolist() == [0.0, 1.0]
    road[1, PATCH[0], 27:32] = 105  # half the patch's columns road again
    assert 0.4 < grass_share(road[1]) < 0.6


@pytest.mark.parametrize("frame", ["paper", "full"])
def test_drive_stats_patch_holds_the_car_in_either_frame(frame):
    from experiments.drive_stats import PATCHES
    from worldmodels.envs import adapter_for

    env = adapter_for("worldmodels/CarRacing-v3").make(60, frame)
    obs, _ = env.reset(seed=3)
    for _ in range(50):  # past the zoom-in at the start
        obs, *_ = env.step(np.zeros(3, np.float32))
    env.close()
    r, g = obs[..., 0].astype(int), obs[..., 1].astype(int)
    car = (r > 150) & (g < 100)
    rows, cols = PATCHES[frame]
    assert car.sum() > 4 and car[rows, cols].sum() == car.sum()


def test_drive_stats_speed_reading_is_zero_standing_and_grows_with_gas():
    from experiments.drive_stats import speed_reading
    from worldmodels.envs import adapter_for

    env = adapter_for("worldmodels/CarRacing-v3").make(200, "full")
    env.reset(seed=3)
    readings = []
    for gas in [0.0] * 50 + [1.0] * 40:
        obs, *_ = env.step(np.array([0.0, gas, 0.0], np.float32))
        readings.append(float(speed_reading(obs)))
    env.close()
    assert readings[49] == 0.0 and readings[69] < readings[-1] and readings[-1] > 0.1


def test_drive_stats_road_offset_reads_where_the_road_ahead_lies():
    from experiments.drive_stats import road_offset

    frames = np.zeros((3, 64, 64, 3), np.uint8)
    frames[..., 1] = 204  # grass
    frames[0, :, 30:35] = 102  # a straight road under the car (column 32)
    frames[1, :, 30:35] = 102
    frames[1, :10, 30:35] = (102, 204, 102)  # ... that bends right far ahead
    frames[1, :10, 48:53] = 102
    got = road_offset(frames)
    assert got[0] == 0.0 and got[1] == 18.0 and np.isnan(got[2])  # the third: no road
    assert road_offset(frames, where="near").tolist()[:2] == [0.0, 0.0]


def test_speed_probe_reads_the_hull_speed_and_recovers_a_linear_speed_from_memory():
    from experiments.speed_probe import Probe, r2, speed_of
    from worldmodels.envs import adapter_for

    env = adapter_for("worldmodels/CarRacing-v3").make(200, "paper")
    env.reset(seed=3)
    speeds = []
    for gas in [0.0] * 50 + [1.0] * 30:
        env.step(np.array([0.0, gas, 0.0], np.float32))
        speeds.append(speed_of(env))
    env.close()
    assert speeds[49] < 1e-3 and 0 < speeds[60] < speeds[-1]
    rng = np.random.default_rng(0)
    h = rng.normal(size=(400, 16)).astype(np.float32)
    speed = 50 + h @ rng.normal(size=16) * 5
    probe = Probe(h[:200], speed[:200], ridge=1.0)
    assert r2(probe(h[200:]), speed[200:]) > 0.99
    noise = rng.normal(size=400) * 100  # a speed the memory does not hold: no fit on other episodes
    assert r2(Probe(h[:200], noise[:200], 1.0)(h[200:]), noise[200:]) < 0.1


def test_speed_probe_refuses_agents_it_cannot_read_by_name():
    from experiments.speed_probe import main

    with pytest.raises(SystemExit, match="doom plays VizdoomTakeCover-v1"):
        main(["--agents", "carracing", "doom", "--quiet"])


def test_drive_stats_v_only_reads_v_from_a_run_directory(trained_run, capsys):
    """--v-only needs V and nothing after it: V's picture of a run's own frames, scored as the full report."""
    from experiments.drive_stats import main

    files = sorted((trained_run / "episodes").glob("ep_*.npz"))[:2]
    main(["--run-dirs", str(trained_run), "--v-only", "--v-episodes", *map(str, files)])
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("V, ") and f"of {len(files)} episodes" in line and "speed bar" not in line
    )


def test_policy_ensemble_votes_output_by_output_and_one_c_is_itself():
    import torch

    from experiments.policy_ensemble import parse_set, vote
    from worldmodels.errors import WorldModelsError
    from worldmodels.models import controller as linear

    torch.manual_seed(0)
    out_dim, in_dim = 3, 5
    params = torch.randn(3, out_dim * in_dim + out_dim)
    x = torch.randn(4, in_dim)
    each = [linear.act(p.expand(4, -1), x, out_dim, True) for p in params]
    assert torch.equal(vote(params[:1], x, out_dim, True, "mean"), each[0])
    assert torch.allclose(vote(params, x, out_dim, True, "mean"), sum(each) / 3)
    med = vote(params, x, out_dim, True, "median")
    stacked = torch.stack(each)
    assert torch.equal(med, stacked.sort(0).values[1])  # the middle of three, output by output
    assert parse_set("0,2", 3) == [0, 2]
    for bad in ("3", "a", "0,-1"):
        with pytest.raises(WorldModelsError, match="--sets"):
            parse_set(bad, 3)
    from experiments.policy_ensemble import main

    with pytest.raises(SystemExit, match="'0,0': a median needs an odd number of Cs"):
        main(["--agent", "carracing", "--sets", "0", "0,0", "--combine", "median", "--quiet"])


def test_policy_ensemble_scales_zs_noise_from_the_episodes_own_stream():
    from experiments.policy_ensemble import _Scaled

    base = np.random.default_rng(5).standard_normal(4)
    assert np.array_equal(_Scaled(np.random.default_rng(5), 1.0).standard_normal(4), base)
    assert np.allclose(_Scaled(np.random.default_rng(5), 1.5).standard_normal(4), 1.5 * base)
    assert not _Scaled(np.random.default_rng(5), 0.0).standard_normal(4).any()
