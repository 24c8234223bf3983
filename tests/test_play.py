"""`worldmodels play`: the keys of each game, the session without a browser, and the page in a real headless
Chromium against the shipped Doom agent (keys change the frames and the action, the temperature changes M's
sampling, a dream episode ends, the agent plays in the dream and the real env), a port in use, Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_pipeline import _chromium
from worldmodels.config import preset, with_overrides
from worldmodels.envs import adapter_for
from worldmodels.errors import WorldModelsError
from worldmodels.play.session import PlaySession, Source
from worldmodels.workers import VMWeights

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _vec(env_id: str, held: set[str]) -> np.ndarray:
    a = adapter_for(env_id)
    out = torch.from_numpy(a.controls().outputs(held))[None]
    return a.controller_to_vector(out)[0].numpy()


def test_each_games_keys_reach_the_action_m_sees():
    assert _vec("VizdoomTakeCover-v1", set()).tolist() == [0.0]
    assert _vec("VizdoomTakeCover-v1", {"ArrowLeft"}).tolist() == [-1.0]
    assert _vec("VizdoomTakeCover-v1", {"ArrowRight"}).tolist() == [1.0]
    car = "worldmodels/CarRacing-v3"
    assert _vec(car, set()).tolist() == [0.0, 0.0, 0.0]  # no steer, no gas, no brake
    assert _vec(car, {"ArrowUp", "ArrowLeft"}).tolist() == [-1.0, 1.0, 0.0]
    assert _vec(car, {"ArrowDown"}).tolist() == [0.0, 0.0, 1.0]
    # a generic Discrete(4) scenario: digits pick the action; no key is the first one
    basic = adapter_for("VizdoomBasic-v1")
    assert [c.key for c in basic.controls().keys] == ["1", "2", "3", "4"]
    for k, want in (("1", 0), ("3", 2), ("4", 3)):
        assert basic.vector_to_action(_vec("VizdoomBasic-v1", {k})) == want
    # Deathmatch's Dict (18 discrete actions and 3 continuous deltas): every key is distinct
    keys = [c.key for c in adapter_for("VizdoomDeathmatch-v1").controls().keys]
    assert len(keys) == 18 + 2 * 3 == len(set(keys))


def _source(env_id: str, reward_head: bool, with_c: bool = True) -> Source:
    # no done head: an untrained one may end the dream at any frame
    cfg = with_overrides(preset("debug"), {"env.id": env_id, "mdnrnn.reward_head": reward_head,
                                           "mdnrnn.done_head": False, "controller.bias": True})  # fmt: skip
    models = VMWeights.untrained(cfg, seed=3).models()
    rng = np.random.default_rng(0)
    starts = (rng.standard_normal((5, cfg.vae.z_dim)).astype(np.float32),
              np.full((5, cfg.vae.z_dim), -2.0, np.float32))  # fmt: skip
    params = None
    if with_c:
        from worldmodels.models import controller_dims, n_params

        i, o = controller_dims(cfg, models.adapter.controller_outputs)
        params = rng.standard_normal(n_params(i, o, True)).astype(np.float32)
    return Source("test", models, params, starts)


def test_carracing_session_dream_and_real():
    s = PlaySession(_source("worldmodels/CarRacing-v3", reward_head=True))
    assert "reward head" in s.info()["reward"] and s.info()["has_controller"]
    first = s.reset("dream", "you", seed=4)
    left = [s.step(["ArrowLeft", "ArrowUp"]) for _ in range(5)][-1]
    s.reset(seed=4)
    right = [s.step(["ArrowRight", "ArrowUp"]) for _ in range(5)][-1]
    assert left["action"] == "steer -1.00 gas 1.00 brake 0.00" and right["action"].startswith(
        "steer +1"
    )
    assert left["frame"] != right["frame"] and first["t"] == 0 and left["t"] == 5
    assert (
        left["reward"] != 1.0 and left["recon"] is None
    )  # the reward head's prediction, not a count
    s.reset(seed=4, temperature=0.2)
    cold = [s.step(["ArrowLeft", "ArrowUp"]) for _ in range(5)][-1]
    assert cold["frame"] != left["frame"] and cold["temperature"] == 0.2
    real = s.reset("real", "agent", seed=1)
    for _ in range(3):
        real = s.step([])
    assert real["where"] == "real" and real["recon"] is not None and real["t"] == 3
    assert len(s.decode([0.0] * 8)["frame"]) == len(real["frame"])
    with pytest.raises(WorldModelsError, match="z must be 8"):
        s.decode([0.0] * 3)
    with pytest.raises(WorldModelsError, match="where"):
        s.reset("moon")
    s.close()


def test_a_session_without_c_only_lets_you_drive():
    s = PlaySession(_source("VizdoomTakeCover-v1", reward_head=False, with_c=False))
    assert not s.info()["has_controller"] and "survived" in s.info()["reward"]
    with pytest.raises(WorldModelsError, match="no trained C"):
        s.step([], driver="agent")
    assert s.step(["ArrowLeft"])["reward"] == 1.0


def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldmodels.cli", "play", "--no-browser", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # the first line names the address
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, m.group(0)


def test_port_in_use_is_one_line_and_ctrl_c_stops_cleanly():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "worldmodels.cli", "play", "--pretrained", "doom", "--no-browser",
             "--port", str(port)], capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"--port {port}: already in use" in out.stderr
    proc, _ = _serve("--pretrained", "doom", "--port", "0")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()


@pytest.fixture(scope="module")
def browser_page():
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    proc, url = _serve("--pretrained", "doom", "--port", "0")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 820})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("window.play.last && window.play.last.t >= 3", timeout=60_000)
        yield page, errors
        b.close()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def _episode(page, seed: int, frames: int, tau: float | None = None, keys: tuple[str, ...] = ()):
    """Restart at `seed` (and tau) with `keys` held; the answer of frame `frames` once it is reached."""
    if tau is not None:
        page.evaluate(f"() => {{ const s = document.getElementById('tau'); s.value = {tau}; "
                      "s.dispatchEvent(new Event('input')); }")  # fmt: skip
    page.fill("#seed", str(seed))
    page.focus("#restart")  # arrow keys in the seed field would change the seed, not drive
    for k in keys:
        page.keyboard.down(k)
    before = page.evaluate("window.play.episodes")
    page.click("#restart")
    page.wait_for_function(f"window.play.episodes === {before + 1} && !window.play.resetting && "
                           f"window.play.frames[{frames}] !== undefined", timeout=60_000)  # fmt: skip
    answer = page.evaluate(f"() => ({{...window.play.last, frame: window.play.frames[{frames}]}})")
    shown = page.inner_text("#action")
    for k in keys:
        page.keyboard.up(k)
    return answer, shown


def test_page_keys_temperature_episode_end_and_agent(browser_page, tmp_path):
    page, errors = browser_page
    assert page.inner_text("#keys").count("left") == 1 and "right" in page.inner_text("#keys")
    page.select_option("#speed", "0")  # as fast as it goes
    left, shown_left = _episode(page, 5, 20, keys=("ArrowLeft",))
    right, shown_right = _episode(page, 5, 20, keys=("ArrowRight",))
    assert (shown_left, shown_right) == ("left", "right")
    assert left["frame"] != right["frame"]  # the same dream seed, other keys: another dream
    again, _ = _episode(page, 5, 20, keys=("ArrowLeft",))
    assert again["frame"] == left["frame"]  # and the same keys give the same dream
    hot, _ = _episode(page, 5, 20, tau=2.0, keys=("ArrowLeft",))
    assert hot["temperature"] == 2.0 and hot["frame"] != left["frame"]  # tau reaches M's sampling
    # a dream episode ends when M's done head says so (standing still in Doom's dream)
    _episode(page, 6, 1, tau=1.15)
    page.wait_for_function("window.play.last.done", timeout=120_000)
    assert "M's done head" in page.inner_text("#status")
    # the agent: in the dream, then in the real env beside V's reconstruction
    page.check("#driver-agent")
    a, shown = _episode(page, 7, 30)
    assert a["driver"] == "agent" and shown in ("left", "right", "none")
    page.check("input[name=where][value=real]")
    page.wait_for_function("window.play.last.where === 'real' && window.play.last.t >= 30",
                           timeout=60_000)  # fmt: skip
    assert page.is_visible("#recon") and page.evaluate("window.play.last.driver") == "agent"
    # V only: a random z decodes to another picture than z = 0
    page.click("#z-zero")
    page.wait_for_timeout(300)
    zero = page.evaluate("document.getElementById('vframe').toDataURL()")
    page.click("#z-random")
    page.wait_for_timeout(300)
    assert page.evaluate("document.getElementById('vframe').toDataURL()") != zero
    # a screenshot of the dream at 20 frames a second (the README's picture comes from here)
    page.check("input[name=where][value=dream]")
    page.select_option("#speed", "50")
    page.wait_for_function("window.play.last.where === 'dream' && window.play.last.t >= 40",
                           timeout=60_000)  # fmt: skip
    shot = tmp_path / "play.png"
    page.screenshot(path=str(shot))
    if os.environ.get("WORLDMODELS_SCREENSHOT"):
        shutil.copy(shot, Path(os.environ["WORLDMODELS_SCREENSHOT"]))
    assert shot.stat().st_size > 10_000
    assert errors == []


def test_a_committee_where_one_c_is_outvoted_plays_as_the_other_two(tmp_path):
    """`worldmodels play` serves a committee agent (iterate.final_vote): a random C first, then the shipped
    CarRacing C twice; the median of (x, a, a) is a, output by output, so the dream and the real env go
    exactly as with the shipped C alone (neither the first member alone nor a mean would)."""
    from worldmodels.agent import load_controller, save_controller
    from worldmodels.config import load_config
    from worldmodels.pretrained import pretrained_dir
    from worldmodels.utils import read_header

    shipped = pretrained_dir("carracing")
    vote = tmp_path / "vote"
    shutil.copytree(shipped, vote)
    cfg = load_config(vote / "config.json")
    c = load_controller(vote / "controller.pt", cfg)
    other = np.random.default_rng(0).standard_normal(c.shape).astype(np.float32)
    save_controller(vote / "controller.pt", np.stack([other, c, c]),
                    read_header(vote / "controller.pt", "controller"))  # fmt: skip
    runs = []
    for folder in (shipped, vote):
        s = PlaySession(Source.of_run(folder))
        steps = [s.reset("dream", "agent", seed=3)] + [s.step([]) for _ in range(4)]
        steps += [s.reset("real", "agent", seed=3)] + [s.step([]) for _ in range(4)]
        runs.append([(x["action"], x["frame"]) for x in steps])
        s.close()
    assert runs[0] == runs[1]
