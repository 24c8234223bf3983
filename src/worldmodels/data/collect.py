"""Random-policy rollouts into RUN_DIR/episodes, resumable, reproducible, local or on Ray."""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldmodels.config import CollectConfig, Config, EnvConfig
from worldmodels.data.storage import (
    EPISODE_KEYS,
    DeflateStream,
    deflate_array,
    episode_path,
    list_episodes,
    npy_header,
    zip_members,
)
from worldmodels.envs import FRAME, Adapter, adapter_for
from worldmodels.envs.base import PixelObservation, preprocess_batch
from worldmodels.episodes import play_episode, worker_env
from worldmodels.errors import WorldModelsError
from worldmodels.parallel import run_tasks
from worldmodels.rundir import RunDir, remove_stale_temporaries
from worldmodels.utils import (
    STREAM_COLLECT,
    Metrics,
    Stopwatch,
    atomic_write_bytes,
    rng_for,
    seed_for,
    usable_cores,
)


@dataclass(frozen=True)
class EpisodeTask:
    """Everything a worker needs to collect episode `index`; its seeds derive from (seed, index)."""

    env: EnvConfig
    collect: CollectConfig
    seed: int
    index: int
    background: bool = False
    """Encode frames on a second thread (see EpisodeRecorder)."""

    def __repr__(self) -> str:
        return f"episode {self.index} of {self.env.id}"


def encode_in_background(cfg: Config) -> bool:
    """Whether workers encode frames on a second thread (`parallel.encode_thread`; `auto`: when local
    workers leave a core free)."""
    if cfg.parallel.encode_thread != "auto":
        return cfg.parallel.encode_thread == "on"
    return cfg.parallel.backend == "local" and cfg.parallel.workers < usable_cores()


CHUNK = 16
"""Frames per piece of work handed to the encoder thread."""

_encoder: ThreadPoolExecutor | None = None
_spare: queue.SimpleQueue = queue.SimpleQueue()
"""Chunk buffers whose frames have been encoded, for the next chunks to reuse."""


def encoder_thread() -> ThreadPoolExecutor:
    """This process's one encoder thread (made on first use, so forked workers make their own)."""
    global _encoder
    if _encoder is None:
        _encoder = ThreadPoolExecutor(1, thread_name_prefix="worldmodels-encode")
    return _encoder


class EpisodeRecorder:
    """Builds one episode's file while the episode is played.

    Raw frames are copied into chunks of CHUNK frames, and each full chunk is cropped, resized and deflated.
    With `background`, that happens on this process's encoder thread while the game goes on (numpy's matrix
    products and ISA-L release the GIL), so the game loop only pays for a copy: worth it when a core is
    free, as for one worker on a 2-core machine; with a worker on every core the thread would only compete
    with the games, so it is off. `finish` returns the .npz bytes. Chunks are encoded in order either way.
    """

    def __init__(self, crop_bottom: int | None, background: bool = False) -> None:
        self._crop = crop_bottom
        self._background = background
        self._stream = DeflateStream()
        self._jobs: list[Future] = []
        self._buf: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None
        self._n = 0
        self.frames = 0

    def add(self, img: np.ndarray | None) -> None:
        if img is None:  # an env that returns no frame: black, as PixelObservation does
            if self._shape is None:
                raise WorldModelsError("the env returned no frame at the start of an episode")
            img = np.zeros(self._shape, np.uint8)
        if self._buf is None:
            self._buf = self._new_buffer(img.shape)
        self._buf[self._n] = img
        self._n += 1
        self.frames += 1
        if self._n == CHUNK:
            self._submit()

    def _new_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise WorldModelsError(
                f"the env's frames changed shape mid-episode: {self._shape} -> {shape}"
            )
        while True:
            try:
                buf = _spare.get_nowait()
            except queue.Empty:
                return np.empty((CHUNK, *shape), np.uint8)
            if buf.shape[1:] == shape:
                return buf

    def _submit(self) -> None:
        buf, n, self._buf, self._n = self._buf, self._n, None, 0
        if not self._background:
            self._encode(buf, n)
            return
        self._jobs.append(encoder_thread().submit(self._encode, buf, n))

    def _encode(self, buf: np.ndarray, n: int) -> None:
        self._stream.write(preprocess_batch(buf[:n], self._crop))
        _spare.put(buf)

    def finish(self, arrays: dict[str, np.ndarray]) -> bytes:
        """The episode's .npz: obs from the recorded frames, then `arrays` (action, reward, ...)."""
        if self._n:
            self._submit()
        for job in self._jobs:
            job.result()  # in order; raises what the encoder raised
        header = npy_header((self.frames, FRAME, FRAME, 3), np.uint8)
        members = {"obs.npy": self._stream.finish(prefix=header)}
        members.update({f"{k}.npy": deflate_array(v) for k, v in arrays.items()})
        return zip_members(members)


def record_episode(
    env: PixelObservation,
    adapter: Adapter,
    act: Callable[[Any], Any],
    env_seed: int,
    background: bool = False,
) -> dict[str, Any]:
    """Play one episode with `act(raw observation) -> env action`; return its file's bytes and length.

    Steps the env under the PixelObservation wrapper, so the frames reach the recorder raw and are resized
    off the game's thread; the stored frames are exactly those the wrapper would give."""
    rec = EpisodeRecorder(env.crop_bottom, background)
    ep = play_episode(
        env.env, adapter, act, env_seed, keep_frame=lambda obs: rec.add(env.image(obs))
    )
    data = rec.finish({k: ep[k] for k in EPISODE_KEYS[1:]})
    return {"data": data, "steps": ep["length"], "return": ep["return"]}


def collect_episode(task: EpisodeTask) -> dict[str, Any]:
    """Collect one random-policy episode; return it compressed, ready to be written by the driver."""
    adapter = adapter_for(task.env.id)
    env = worker_env(task.env)
    policy = adapter.random_policy(task.collect)
    policy.reset(rng_for(task.seed, STREAM_COLLECT, task.index, 1))
    env_seed = seed_for(task.seed, STREAM_COLLECT, task.index)
    ep = record_episode(env, adapter, policy, env_seed, task.background)
    return {"data": ep["data"], "steps": ep["steps"]}


def missing_episodes(folder: Path, n: int) -> list[int]:
    have = {int(p.stem[3:]) for p in list_episodes(folder)}
    return [i for i in range(n) if i not in have]


def collect_done(run_dir: Path, cfg: Config) -> bool:
    return not missing_episodes(RunDir(run_dir).episodes, cfg.collect.episodes)


def collect(run_dir: Path, cfg: Config, progress: bool = True) -> dict[str, float]:
    """Collect episodes 0..N-1 that are not on disk yet; finished episodes survive any kill."""
    folder = RunDir(run_dir).episodes
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    adapter_for(cfg.env.id)  # fail fast, in this process, on an unknown env or a missing package
    todo = missing_episodes(folder, cfg.collect.episodes)
    background = encode_in_background(cfg)
    tasks = [EpisodeTask(cfg.env, cfg.collect, cfg.seed, i, background) for i in todo]
    metrics = Metrics(run_dir, "collect", cfg.tensorboard)
    clock, steps = Stopwatch(), 0
    bar = tqdm(total=cfg.collect.episodes, initial=cfg.collect.episodes - len(todo),
               desc="collect", unit="ep", disable=not progress, dynamic_ncols=True)  # fmt: skip
    try:
        for task, result in run_tasks(collect_episode, tasks, cfg.parallel):
            atomic_write_bytes(episode_path(folder, task.index), result["data"])
            steps += result["steps"]
            bar.update(1)
            bar.set_postfix(steps_per_s=f"{steps / max(clock(), 1e-9):.0f}")
    finally:
        bar.close()
    summary = {
        "collect/episodes": float(len(tasks)),
        "collect/steps": float(steps),
        "perf/env_steps_per_s": steps / max(clock(), 1e-9),
    }
    if tasks:
        metrics.log(cfg.collect.episodes, **summary)
    metrics.close()
    return summary


__all__ = [
    "EpisodeRecorder",
    "EpisodeTask",
    "collect",
    "collect_episode",
    "record_episode",
]
