"""The agents shipped in the package: each loads on a fresh checkout and clearly beats the random policy."""

from __future__ import annotations

import json

import pytest

from tests.conftest import cli
from worldmodels.pretrained import ROOT

ENVS = {"doom": "VizdoomTakeCover-v1", "carracing": "worldmodels/CarRacing-v3"}


@pytest.mark.parametrize("name", list(ENVS))
def test_shipped_agent_is_small_and_complete(name):
    shipped = ROOT / name
    sizes = {p.name: p.stat().st_size for p in shipped.iterdir()}
    for f in ("config.json", "vae.pt", "mdnrnn.pt", "controller.pt", "latents_starts.npz"):
        assert f in sizes, f
    assert sum(sizes.values()) <= 30 * 2**20
    prov = json.loads((shipped / "provenance.json").read_text())
    assert prov["run_config"]["env"]["id"] == ENVS[name]


def _scores(name: str, episodes: int, tmp_path) -> tuple[dict, dict]:
    # real episodes on the same seeds (deterministic: same seeds, same scores on a given machine)
    args = [
        "--run-dir",
        str(tmp_path / "run"),
        "--episodes",
        str(episodes),
        "--seed",
        "3",
        "--quiet",
    ]
    out = cli("evaluate", "--pretrained", name, *args)
    assert out.returncode == 0, out.stderr[-2000:]
    out = cli("evaluate", "--pretrained", name, "--policy", "random", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    agent = json.loads((tmp_path / "run" / "eval.json").read_text())
    random = json.loads((tmp_path / "run" / "eval_random.json").read_text())
    assert agent["episodes"] == random["episodes"] == episodes
    return agent, random


def test_shipped_doom_agent_beats_the_random_policy_on_the_same_episodes(tmp_path):
    agent, random = _scores("doom", 6, tmp_path)
    assert agent["mean"] > 1.5 * random["mean"], (agent["returns"], random["returns"])
    # --out: another seed's evaluation goes to its own file; the run's files and config stay as they were
    elsewhere = tmp_path / "random_seed4.json"
    out = cli("evaluate", "--pretrained", "doom", "--run-dir", str(tmp_path / "run"), "--policy", "random",
              "--episodes", "2", "--seed", "4", "--quiet", "--out", str(elsewhere))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(elsewhere.read_text())["seed"] == 4
    assert json.loads((tmp_path / "run" / "eval_random.json").read_text()) == random
    shipped = json.loads((ROOT / "doom" / "config.json").read_text())["evaluate"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["evaluate"] == shipped


def test_shipped_carracing_agent_drives_the_track(tmp_path):
    """Trained only in the dream; the Brownian random policy stays below 0 (it mostly leaves the track)."""
    agent, random = _scores("carracing", 3, tmp_path)
    assert random["mean"] < 0 and agent["mean"] > 600, (agent["returns"], random["returns"])
