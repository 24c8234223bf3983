"""The run directory as one object (worldmodels.rundir): its paths, round 0 as a round, which round is the
agent; run directories laid out as every earlier version wrote them (and the shipped agents) still load."""

from __future__ import annotations

import json
import shutil

import pytest

import worldmodels as wm
from worldmodels.config import load_config, save_config, with_overrides
from worldmodels.errors import WorldModelsError
from worldmodels.pretrained import ROOT
from worldmodels.rundir import RunDir


def test_round_zero_is_a_round_whose_models_are_at_the_top(tmp_path):
    run = RunDir(tmp_path)
    zero, two = run.round(0), run.round(2)
    assert (zero.mdnrnn, zero.controller, zero.es_state) == (
        tmp_path / "mdnrnn.pt", tmp_path / "controller.pt", tmp_path / "es_state.pkl")  # fmt: skip
    assert zero.eval == tmp_path / "rounds/0/eval.json"  # its records live with the others'
    assert (two.mdnrnn, two.eval, two.done_marker) == (
        tmp_path / "rounds/2/mdnrnn.pt", tmp_path / "rounds/2/eval.json", tmp_path / "rounds/2/done")  # fmt: skip
    assert [run.round(r).stage("train-mdnrnn") for r in (0, 3)] == [
        "train-mdnrnn",
        "iterate-3/train-mdnrnn",
    ]
    assert run.evaluation("random") == tmp_path / "eval_random.json"


def _old_layout_run(tmp_path, rounds: int, choose: str):
    """A run directory as every version so far lays it out: the first M and C at the top, round r's in
    rounds/r with a `done` marker, `iterate.choose best`'s pick in rounds/chosen.json. The shipped Doom
    agent's files stand in for every round's weights."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / "doom", run)
    cfg = with_overrides(load_config(run / "config.json"),
                         {"iterate.rounds": rounds, "iterate.choose": choose, "iterate.eval_episodes": 4})  # fmt: skip
    save_config(cfg, run / "config.json")
    for r in range(1, rounds + 1):
        (run / "rounds" / str(r)).mkdir(parents=True)
        for f in ("mdnrnn.pt", "controller.pt"):
            shutil.copy(run / f, run / "rounds" / str(r) / f)
        (run / "rounds" / str(r) / "done").write_text(f"round {r} of {rounds}\n")
    return run, cfg


def test_a_run_laid_out_by_earlier_versions_loads_with_its_agent_round(tmp_path):
    run, cfg = _old_layout_run(tmp_path, 2, "last")
    assert RunDir(run).agent(cfg) == (run / "rounds/2/mdnrnn.pt", run / "rounds/2/controller.pt")
    agent = wm.load(run)
    assert agent.controller.params.shape == (1088,)
    # choose best: the round named in rounds/chosen.json, round 0 included
    run, cfg = _old_layout_run(tmp_path / "b", 2, "best")
    with pytest.raises(WorldModelsError, match="has not finished its 2 round"):
        RunDir(run).agent(cfg)  # not chosen yet
    (run / "rounds/chosen.json").write_text(json.dumps({"round": 0, "rounds": 2, "episodes": 4,
                                                       "mean_return": {"0": 9, "1": 1, "2": 2}}))  # fmt: skip
    assert RunDir(run).agent(cfg) == (run / "mdnrnn.pt", run / "controller.pt")
    assert (
        RunDir(run).chosen_round(with_overrides(cfg, {"iterate.rounds": 3})) is None
    )  # chosen among 2


@pytest.mark.parametrize("name", ["doom", "carracing"])
def test_the_shipped_agents_are_run_directories(name):
    run = RunDir(ROOT / name)
    cfg = load_config(run.config)
    assert run.agent(cfg) == (run.root / "mdnrnn.pt", run.root / "controller.pt")
    assert run.shipped_starts.exists()
