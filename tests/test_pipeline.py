"""`worldmodels run`: the whole debug pipeline, kills mid-stage, refused changes, the report in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from worldmodels.config import load_config
from worldmodels.data.storage import list_episodes
from worldmodels.pipeline import STAGES

from .conftest import cli, one_line_error


def test_debug_pipeline_writes_every_promised_file(trained_run):
    run = trained_run
    for name in ("config.json", "metrics.jsonl", "vae.pt", "mdnrnn.pt", "controller.pt", "es_state.pkl",
                 "reconstructions.png", "eval.json", "eval_random.json", "eval_dream.json", "real.gif",
                 "dream.gif", "report.html", "timings.json"):  # fmt: skip
        assert (run / name).stat().st_size > 0, name
    assert len(list_episodes(run / "episodes")) == 6
    assert len(list_episodes(run / "latents")) == 6
    e = json.loads((run / "eval.json").read_text())
    assert e["episodes"] == len(e["returns"]) == 4
    stages = {
        json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()
    }
    assert {"collect", "train-vae", "train-mdnrnn", "train-controller"} <= stages
    # a finished V or M keeps its weights alone (no optimiser state, a third of V's size)
    for name in ("vae.pt", "mdnrnn.pt"):
        assert set(torch.load(run / name, weights_only=True)) == {"header", "model"}, name
    # rerunning skips every stage
    out = cli("run", "--run-dir", str(run), "--quiet")
    assert out.returncode == 0 and out.stdout.count("done, skipped") == len(STAGES)


def test_report_numbers_and_images_match_the_run(trained_run):
    page = (trained_run / "report.html").read_text()
    for name in ("eval.json", "eval_random.json", "eval_dream.json"):
        e = json.loads((trained_run / name).read_text())
        row = re.search(rf'<tr data-file="{name}">(.*?)</tr>', page).group(1)
        assert (
            f'class="num mean">{e["mean"]:.1f}<' in row
            and f'class="num episodes">{e["episodes"]}<' in row
        )
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/") for s in srcs)  # self-contained


def _kill_when(cmd: list[str], ready, timeout: float = 120) -> None:
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_in_each_stage_then_rerun_completes(tmp_path):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "worldmodels.cli", "run", "--preset", "debug", "--run-dir", str(run), "--quiet",
            "--vae.checkpoint_every_s", "0", "--mdnrnn.checkpoint_every_s", "0", "--collect.episodes", "6"]  # fmt: skip
    stage_markers = [
        lambda: len(list_episodes(run / "episodes")) >= 2,
        lambda: (run / "vae.pt").exists(),
        lambda: len(list_episodes(run / "latents")) >= 2,
        lambda: (run / "mdnrnn.pt").exists(),
        lambda: (run / "es_state.pkl").exists(),
        lambda: (run / "eval.json").exists(),
    ]
    for ready in stage_markers:
        _kill_when(base, ready)
    out = cli(*base[3:])
    assert out.returncode == 0, out.stderr
    assert [p.name for p in list_episodes(run / "episodes")] == [
        f"ep_{i:06d}.npz" for i in range(6)
    ]
    assert len(list_episodes(run / "latents")) == 6
    assert not list(run.rglob(".*.tmp"))
    assert (run / "report.html").exists()
    e = json.loads((run / "eval.json").read_text())
    assert len(e["returns"]) == e["episodes"]


def test_changed_setting_after_a_finished_stage_is_refused_then_forced(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    line = one_line_error(cli("run", "--run-dir", str(run), "--mdnrnn.hidden", "8", "--quiet"))
    assert "train-mdnrnn" in line and "--mdnrnn.hidden" in line and "--force" in line
    line = one_line_error(cli("train-vae", "--run-dir", str(run), "--vae.lr", "0.01", "--quiet"))
    assert "train-vae" in line and "vae.lr" in line
    # a setting no finished stage depends on is fine
    assert (
        cli(
            "evaluate", "--run-dir", str(run), "--workers", "1", "--episodes", "4", "--quiet"
        ).returncode
        == 0
    )
    before = (run / "vae.pt").read_bytes()
    out = cli(
        "run", "--run-dir", str(run), "--mdnrnn.hidden", "8", "--force", "train-mdnrnn", "--quiet"
    )
    assert out.returncode == 0, out.stderr
    assert (run / "vae.pt").read_bytes() == before  # earlier stages untouched
    assert json.loads((run / "config.json").read_text())["mdnrnn"]["hidden"] == 8


def test_bad_force_stage_and_preset_clash(trained_run):
    assert "--force" in one_line_error(cli("run", "--run-dir", str(trained_run), "--force", "nope"))
    assert "preset" in one_line_error(cli("run", "--run-dir", str(trained_run), "--preset", "demo"))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_opens_in_a_real_browser(trained_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=args)
        page = b.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(trained_run / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        widths = page.evaluate(
            "Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
        )
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        b.close()
    assert len(widths) >= 5 and all(w > 0 for w in widths), widths
    assert errors == []
    assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_carracing_pipeline_with_real_env_fitness_then_scored_on_gymnasiums_env(tmp_path):
    """C trained in the real env (worldmodels/CarRacing-v3); then `evaluate --env CarRacing-v3` scores the
    same agent on gymnasium's own env: the same returns, the run's config unchanged."""
    run = tmp_path / "car"
    out = cli("run", "--preset", "debug", "--env", "worldmodels/CarRacing-v3", "--where", "real",
              "--run-dir", str(run), "--controller.population", "4", "--collect.episodes", "4",
              "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    ours = json.loads((run / "eval.json").read_text())
    assert ours["env"] == "worldmodels/CarRacing-v3" and len(ours["returns"]) == 4
    assert not (
        run / "eval_dream.json"
    ).exists()  # no reward head: the dream cannot score CarRacing
    assert (run / "dream.gif").exists() and (run / "report.html").exists()
    out = cli("evaluate", "--run-dir", str(run), "--env", "CarRacing-v3", "--quiet")
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = json.loads((run / "eval.json").read_text())
    assert theirs["env"] == "CarRacing-v3"
    assert theirs["returns"] == ours["returns"] and theirs["lengths"] == ours["lengths"]
    assert load_config(run / "config.json").env.id == "worldmodels/CarRacing-v3"  # unchanged
    line = one_line_error(cli("evaluate", "--run-dir", str(run), "--env", "VizdoomBasic-v1"))
    assert "not the same game" in line
