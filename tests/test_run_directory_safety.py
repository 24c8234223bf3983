"""What a mistake or a machine fault leaves in a run directory: a failed first command leaves nothing that
ties it; commands that only read a run work beside the one that holds it; a full disk is named."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import uuid

import pytest

from worldmodels import config as C
from worldmodels.data.storage import list_episodes, verify_episodes
from worldmodels.lock import RunDirLock

from .conftest import cli, copy_run, one_line_error

# ---------------------------------------------------------------- a failed first command ties nothing


def test_a_failed_first_command_leaves_nothing_that_refuses_the_next(tmp_path):
    run = tmp_path / "run"
    line = one_line_error(cli("collect", "--preset", "debug", "--env", "CartPole-v1",
                              "--run-dir", str(run), "--quiet"))  # fmt: skip
    assert "CartPole-v1" in line
    assert not run.exists()  # no config.json, no empty episodes/
    out = cli("collect", "--preset", "debug", "--env", "VizdoomBasic-v1", "--run-dir", str(run),
              "--episodes", "1", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert C.load_config(run / "config.json").env.id == "VizdoomBasic-v1"


def test_a_config_no_stage_used_pins_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "episodes").mkdir(parents=True)  # an empty folder, as a collection killed at once leaves
    C.save_config(
        C.with_overrides(C.preset("debug"), {"env.id": "CartPole-v1"}), run / "config.json"
    )
    out = cli(
        "collect", "--run-dir", str(run), "--env", "VizdoomBasic-v1", "--episodes", "1", "--quiet"
    )
    assert out.returncode == 0, out.stderr
    # and another preset, while no stage has written anything, starts the run afresh
    run2 = tmp_path / "run2"
    run2.mkdir()
    C.save_config(C.preset("demo"), run2 / "config.json")
    out = cli("collect", "--preset", "debug", "--run-dir", str(run2), "--episodes", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert C.load_config(run2 / "config.json").preset == "debug"


def test_a_failed_command_in_an_existing_run_keeps_it(collected_run, tmp_path):
    run = copy_run(collected_run, tmp_path / "run")
    config = (run / "config.json").read_bytes()
    one_line_error(cli("collect", "--run-dir", str(run), "--env", "CartPole-v1", "--quiet"))
    assert (run / "config.json").read_bytes() == config
    assert len(list_episodes(run / "episodes")) == 6


# ------------------------------------------------------------------- watching a run that is going on


def test_a_command_that_holds_the_run_removes_what_killed_writes_left(trained_run, tmp_path):
    """A kill between an atomic write's temporary and its rename leaves .NAME.XXXX.tmp; the next command
    that holds the run deletes those at the top level and in rounds/R, and keeps every real file."""
    run = copy_run(trained_run, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and p.name != ".lock")
    (run / "rounds" / "0").mkdir(parents=True, exist_ok=True)
    stale = [run / ".mixture_usage.json.h8p3rneo.tmp", run / ".timings.json.x1.tmp",
             run / "rounds" / "0" / ".eval.json.y2.tmp"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"half a file")
    out = cli("run", "--run-dir", str(run), "--quiet")  # every stage done: skipped
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in stale)
    after = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and p.name != ".lock")
    assert set(before) <= set(after)


def test_reading_commands_work_beside_the_command_that_holds_the_run(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    config = (run / "config.json").read_bytes()
    holder = RunDirLock()  # what a running `worldmodels run` holds
    holder.acquire(run, "run")
    try:
        out = cli("report", "--run-dir", str(run))
        assert out.returncode == 0, out.stderr
        elsewhere = tmp_path / "e.json"
        out = cli("evaluate", "--run-dir", str(run), "--out", str(elsewhere), "--episodes", "2",
                  "--quiet")  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(elsewhere.read_text())["episodes"] == 2
        pictures = tmp_path / "pictures"
        pictures.mkdir()
        out = cli("render", "--run-dir", str(run), "--out", str(pictures), "--quiet")
        assert out.returncode == 0, out.stderr
        assert (pictures / "real.gif").exists() and (pictures / "dream.gif").exists()
        assert cli("info", "--preset", "debug").returncode == 0
        # a command that writes the run's own files is still refused
        line = one_line_error(cli("evaluate", "--run-dir", str(run), "--quiet"))
        assert "in use by" in line
    finally:
        holder.release()
    assert (run / "config.json").read_bytes() == config


def test_a_report_made_during_a_run_is_rebuilt_at_its_end(trained_run, tmp_path):
    from worldmodels.report import report_done

    run = copy_run(trained_run, tmp_path / "run")
    cfg = C.load_config(run / "config.json")
    assert report_done(run, cfg)
    later = (run / "report.html").stat().st_mtime + 5
    os.utime(run / "eval.json", (later, later))  # the run went on after the report was read
    assert not report_done(run, cfg)


# ---------------------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (skipped where this user cannot mount one)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_during_collect_names_the_path_and_keeps_whole_episodes(small_disk):
    run = small_disk / "run"
    line = one_line_error(cli("collect", "--preset", "debug", "--run-dir", str(run),
                              "--episodes", "400", "--quiet"))  # fmt: skip
    assert re.fullmatch(
        rf"worldmodels collect: error: {re.escape(str(run))}/\S+: No space left on device", line
    ), line
    assert "::" not in line
    assert verify_episodes(run / "episodes") == []  # only whole episodes are left


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("what", ["report", "evaluate", "checkpoint", "metrics"])
def test_every_write_names_the_file_a_full_disk_refused(trained_run, tmp_path, monkeypatch, what):
    run = copy_run(trained_run, tmp_path / "run")
    if what == "checkpoint":
        from worldmodels.utils import save_checkpoint

        monkeypatch.setattr(os, "fsync", _no_space)
        with pytest.raises(OSError) as e:
            save_checkpoint(run / "vae.pt", {"kind": "vae"}, {})
        assert e.value.filename == str(run / "vae.pt")
        return
    if what == "metrics":
        from worldmodels.utils import Metrics

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            write = _no_space

        metrics = Metrics(run, "test")
        monkeypatch.setattr("worldmodels.utils.open", lambda *a, **k: Full(), raising=False)
        with pytest.raises(OSError) as e:
            metrics.log(1, x=1.0)
        assert e.value.filename == str(run / "metrics.jsonl")
        return
    monkeypatch.setattr(os, "fsync", _no_space)
    args = ["report"] if what == "report" else ["evaluate", "--episodes", "2", "--quiet"]
    target = "report.html" if what == "report" else "eval.json"
    line = one_line_error(cli(*args, "--run-dir", str(run)))
    assert line == f"worldmodels {args[0]}: error: {run / target}: No space left on device"
