"""The Doom agent shipped in the package: it loads on a fresh checkout and clearly beats the random policy."""

from __future__ import annotations

import json

from tests.conftest import cli
from worldmodels.pretrained import ROOT

SHIPPED = ROOT / "doom"


def test_shipped_agent_is_small_and_complete():
    sizes = {p.name: p.stat().st_size for p in SHIPPED.iterdir()}
    for name in ("config.json", "vae.pt", "mdnrnn.pt", "controller.pt", "latents_starts.npz"):
        assert name in sizes, name
    assert sum(sizes.values()) <= 30 * 2**20
    prov = json.loads((SHIPPED / "provenance.json").read_text())
    assert prov["run_config"]["env"]["id"] == "VizdoomTakeCover-v1"


def test_shipped_agent_beats_the_random_policy_on_the_same_episodes(tmp_path):
    # 8 real episodes each on the same seeds (deterministic: same seeds, same scores on a given machine).
    args = ["--run-dir", str(tmp_path / "run"), "--episodes", "8", "--seed", "3", "--quiet"]
    out = cli("evaluate", "--pretrained", "doom", *args, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    out = cli("evaluate", "--pretrained", "doom", "--policy", "random", *args, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    agent = json.loads((tmp_path / "run" / "eval.json").read_text())
    random = json.loads((tmp_path / "run" / "eval_random.json").read_text())
    assert agent["episodes"] == random["episodes"] == 8
    assert agent["mean"] > 1.5 * random["mean"], (agent["returns"], random["returns"])
