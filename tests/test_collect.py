"""Collection: round trip, reproducibility, resume after a kill, corrupt files, Ray, datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from worldmodels.config import ParallelConfig, preset, save_config, with_overrides
from worldmodels.data.collect import collect
from worldmodels.data.datasets import FrameStream, SequenceStream, split
from worldmodels.data.storage import EPISODE_KEYS, list_episodes, load_episode, verify_episodes
from worldmodels.errors import WorldModelsError
from worldmodels.parallel import run_tasks

from .conftest import cli, one_line_error, ray_to_itself


def _episodes(run: Path) -> dict[str, dict[str, np.ndarray]]:
    return {p.name: load_episode(p) for p in list_episodes(run / "episodes")}


def test_collect_load_round_trip(collected_run):
    eps = _episodes(collected_run)
    assert len(eps) == 6
    for ep in eps.values():
        T = len(ep["obs"])
        assert ep["obs"].dtype == np.uint8 and ep["obs"].shape == (T, 64, 64, 3)
        assert ep["action"].shape == (T, 1) and set(np.unique(ep["action"])) <= {-1.0, 0.0, 1.0}
        assert all(len(ep[k]) == T for k in EPISODE_KEYS)
        ends = ep["terminated"] | ep["truncated"]
        assert ends[-1] and not ends[:-1].any()  # only the last step ends the episode
        assert T <= 60  # the debug preset's step limit
        if T == 60 and not ep["terminated"][-1]:
            assert ep["truncated"][-1]


def test_same_seed_same_episodes_and_other_seed_differs(collected_run, tmp_path):
    cfg = with_overrides(preset("debug"), {"collect.episodes": 3, "parallel.workers": 1})
    collect(tmp_path / "again", cfg, progress=False)
    a, b = _episodes(collected_run), _episodes(tmp_path / "again")
    for name in b:
        for k in EPISODE_KEYS:
            np.testing.assert_array_equal(a[name][k], b[name][k])
    collect(tmp_path / "other", with_overrides(cfg, {"seed": 1}), progress=False)
    c = _episodes(tmp_path / "other")
    assert any(not np.array_equal(a[n]["action"], c[n]["action"]) for n in c)


def test_resume_after_sigkill_keeps_finished_episodes_and_adds_no_duplicates(
    collected_run, tmp_path
):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "worldmodels.cli", "collect", "--preset", "debug", "--run-dir", str(run),
           "--quiet", "--workers", "1", "--collect.episodes", "40"]  # fmt: skip
    # 40 episodes, not the debug preset's 6: on a fast CPU all 6 were written before the kill landed
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(list_episodes(run / "episodes")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in list_episodes(run / "episodes")}
    assert 2 <= len(before) < 40, "the kill should land mid-collection"
    assert cli(*cmd[3:]).returncode == 0
    after = list_episodes(run / "episodes")
    assert [p.name for p in after] == [f"ep_{i:06d}.npz" for i in range(40)]
    assert all(
        after_p.stat().st_mtime_ns == before[after_p.name]
        for after_p in after
        if after_p.name in before
    )
    assert not [
        p for p in (run / "episodes").iterdir() if p.suffix != ".npz"
    ]  # no temporaries left
    ref, got = _episodes(collected_run), _episodes(run)
    for name in ref:
        np.testing.assert_array_equal(ref[name]["obs"], got[name]["obs"])


def test_corrupt_episode_is_reported_by_name(collected_run, tmp_path):
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(collected_run, run)
    bad = list_episodes(run / "episodes")[2]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(WorldModelsError, match=bad.name):
        load_episode(bad)
    assert len(verify_episodes(run / "episodes")) == 1
    out = cli("collect", "--run-dir", str(run), "--verify")
    assert out.returncode == 1 and bad.name in out.stdout
    assert "corrupt" in one_line_error(out)
    # train-vae reads every episode and stops at the bad one instead of using it
    line = one_line_error(cli("train-vae", "--run-dir", str(run), "--quiet"))
    assert bad.name in line


def _boom(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x * 2


def _die_once(path: str) -> int:
    marker = Path(path)
    if not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return 1


def test_local_executor_surfaces_task_errors_as_one_line():
    with pytest.raises(WorldModelsError, match="three is bad"):
        list(run_tasks(_boom, range(6), ParallelConfig(workers=2)))
    assert sorted(r for _, r in run_tasks(_boom, [0, 1, 2], ParallelConfig(workers=2))) == [0, 2, 4]


def test_local_executor_retries_a_task_whose_worker_died(tmp_path):
    results = list(
        run_tasks(_die_once, [str(tmp_path / "m")], ParallelConfig(workers=1, retries=1))
    )
    assert results == [(str(tmp_path / "m"), 1)]


def _always_die(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_local_executor_gives_up_on_a_task_that_keeps_killing_workers():
    with pytest.raises(WorldModelsError, match="died"):
        list(run_tasks(_always_die, [1], ParallelConfig(workers=1, retries=1)))


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with the cluster tests: see test_ray_cluster.py
def test_ray_backend_gives_the_same_episodes_and_retries_dead_workers(collected_run, tmp_path):
    ray = pytest.importorskip("ray")
    cfg = with_overrides(preset("debug"), {"collect.episodes": 3, "parallel.backend": "ray"})
    save_config(cfg, tmp_path / "config.json")
    with ray_to_itself():
        try:
            collect(tmp_path, cfg, progress=False)
            a, b = _episodes(collected_run), _episodes(tmp_path)
            for name in b:
                np.testing.assert_array_equal(a[name]["obs"], b[name]["obs"])
            got = list(run_tasks(_die_once, [str(tmp_path / "m")], cfg.parallel))
            assert got == [(str(tmp_path / "m"), 1)]
            with pytest.raises(WorldModelsError, match="three is bad"):
                list(run_tasks(_boom, [3], cfg.parallel))
        finally:
            ray.shutdown()


def test_split_is_seeded_per_episode_and_stable(collected_run):
    paths = list_episodes(collected_run / "episodes")
    train, val = split(paths, 0, 0.2)
    assert train and val and set(train).isdisjoint(val) and len(train) + len(val) == len(paths)
    assert split(paths, 0, 0.2) == (train, val)
    train4, val4 = split(paths[:4], 0, 0.2)
    assert set(val4) <= set(val) or len(val4) == 1  # adding episodes does not move old ones


def test_frame_stream_covers_each_frame_once_and_resumes_exactly(collected_run):
    paths = list_episodes(collected_run / "episodes")
    stream = FrameStream(paths, batch_size=16, group=2, seed=0, stream=2)
    batches = list(stream.epoch(0))
    assert len(batches) == stream.batches_in_epoch(0)
    assert sum(len(b) for b in batches) == stream.frames
    skipped = list(stream.epoch(0, skip=5))
    assert len(skipped) == len(batches) - 5
    for a, b in zip(batches[5:], skipped):
        np.testing.assert_array_equal(a, b)
    other = list(stream.epoch(1))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_sequence_batches_mask_padding(tmp_path):
    from worldmodels.data.storage import encode_npz, episode_path
    from worldmodels.utils import atomic_write_bytes

    for i, T in enumerate([5, 9, 3]):
        arrays = {
            "mu": np.full((T, 2), i, np.float32), "logvar": np.zeros((T, 2), np.float32),
            "action": np.ones((T, 1), np.float32), "reward": np.ones(T, np.float32),
            "terminated": np.eye(T, dtype=bool)[-1], "truncated": np.zeros(T, bool),
        }  # fmt: skip
        atomic_write_bytes(episode_path(tmp_path, i), encode_npz(arrays))
    stream = SequenceStream(
        list_episodes(tmp_path), seq_len=4, batch_size=8, group=8, seed=0, stream=3
    )
    (batch,) = list(stream.epoch(0))
    assert batch["mask"].sum() == 5 + 9 + 3
    # each episode's last step has no next z; pieces cut mid-episode do
    assert batch["next_mask"].sum() == 5 + 9 + 3 - 3
    assert batch["terminated"].sum() == 3
    assert batch["mu"].shape[1] == batch["mask"].shape[1] + 1


def test_a_generic_pixel_env_by_id_collects_in_worker_processes(tmp_path):
    # "module:EnvId" makes Gymnasium import the module (which registers the env) in every worker too
    cfg = with_overrides(
        preset("debug"), {"env.id": "tests.conftest:FakePixel-v0", "collect.episodes": 2}
    )
    collect(tmp_path, cfg, progress=False)
    eps = _episodes(tmp_path)
    assert len(eps) == 2
    for ep in eps.values():
        assert ep["obs"].shape == (12, 64, 64, 3) and ep["action"].shape == (12, 4)
        assert ep["terminated"][-1] and not ep["truncated"].any()
        assert (ep["action"].sum(1) == 1).all()  # one-hot Discrete actions


def test_episode_files_are_zips_numpy_reads_with_valid_checksums(tmp_path):
    import io
    import zipfile

    from worldmodels.data.storage import DeflateStream, encode_npz, npy_header, zip_members

    rng = np.random.default_rng(0)
    arrays = {"obs": rng.integers(0, 256, (33, 64, 64, 3), dtype=np.uint8),
              "action": rng.normal(size=(33, 3)).astype(np.float32), "done": np.arange(33) == 32,
              "empty": np.zeros((0, 2), np.float64)}  # fmt: skip
    data = encode_npz(arrays)
    assert data == encode_npz(arrays)  # the same arrays give the same bytes
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None  # every CRC-32 checks out
    with np.load(io.BytesIO(data)) as f:
        for k, v in arrays.items():
            assert f[k].dtype == v.dtype
            np.testing.assert_array_equal(f[k], v)
    # The frames member streamed in pieces, its header (which holds the length) put in front at the end.
    stream = DeflateStream()
    for i in range(0, 33, 7):
        stream.write(arrays["obs"][i : i + 7])
    member = stream.finish(prefix=npy_header((33, 64, 64, 3), np.uint8))
    streamed = zip_members({"obs.npy": member})
    assert zipfile.ZipFile(io.BytesIO(streamed)).testzip() is None
    np.testing.assert_array_equal(np.load(io.BytesIO(streamed))["obs"], arrays["obs"])


@pytest.mark.parametrize("background", [False, True])
def test_recorded_episode_is_what_the_wrapped_env_shows(background):
    """record_episode steps under PixelObservation and resizes later (on a thread or not): the file must
    hold exactly the frames, actions and ends that stepping the wrapped env gives."""
    import io

    from worldmodels.data.collect import record_episode
    from worldmodels.envs import adapter_for
    from worldmodels.episodes import play_episode, worker_env
    from worldmodels.utils import rng_for

    cfg = preset("debug")
    adapter = adapter_for(cfg.env.id)
    env = worker_env(replace(cfg.env, max_steps=200))
    for i in range(3):
        policy = adapter.random_policy(cfg.collect)
        policy.reset(rng_for(0, i))
        want = play_episode(env, adapter, policy, 100 + i)
        policy.reset(rng_for(0, i))
        got = record_episode(env, adapter, policy, 100 + i, background)
        assert got["steps"] == want["length"] and got["return"] == want["return"]
        with np.load(io.BytesIO(got["data"])) as f:
            for k in EPISODE_KEYS:
                assert f[k].dtype == want[k].dtype
                np.testing.assert_array_equal(f[k], want[k])


def test_encoder_thread_is_used_only_where_a_core_is_free(monkeypatch):
    import os

    from worldmodels.data.collect import encode_in_background

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    cfg = preset("debug")

    def background(**kv):
        return encode_in_background(
            with_overrides(cfg, {f"parallel.{k}": v for k, v in kv.items()})
        )

    assert background(workers=1) and not background(workers=2)
    assert not background(workers=1, backend="ray")  # a Ray task holds one CPU
    assert background(workers=4, encode_thread="on") and not background(
        workers=1, encode_thread="off"
    )


def test_collect_stores_the_frame_the_config_names(tmp_path):
    """env.frame reaches the workers: CarRacing collected with `full` stores the indicator bar (dark bottom
    rows), with `paper` the road and grass; the run refuses to change it once collected, and an unknown frame
    is refused by name before anything is written."""
    flags = ["--preset", "debug", "--env", "worldmodels/CarRacing-v3", "--env.max_steps", "20"]
    bottoms = {}
    for frame in ("paper", "full"):
        run = tmp_path / frame
        proc = cli(
            "collect",
            *flags,
            "--episodes",
            "1",
            "--env.frame",
            frame,
            "--run-dir",
            str(run),
            "--quiet",
        )
        assert proc.returncode == 0, proc.stderr
        (path,) = list_episodes(run / "episodes")
        bottoms[frame] = load_episode(path)["obs"][:, -7:].mean()
    assert bottoms["full"] < 40 < bottoms["paper"]
    line = one_line_error(
        cli("collect", "--run-dir", str(tmp_path / "paper"), "--env.frame", "full")
    )
    assert "--env.frame" in line and "collect" in line
    run = tmp_path / "wide"
    line = one_line_error(cli("collect", *flags, "--env.frame", "wide", "--run-dir", str(run)))
    assert "env.frame must be one of paper, full" in line and not run.exists()
