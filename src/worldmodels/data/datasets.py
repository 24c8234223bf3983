"""What V and M train on, streamed from disk: memory depends on the shuffle-buffer size, never on the number
of episodes. Each epoch's order is a function of (seed, epoch) alone, so a resumed run can skip the batches
it already trained on without reading them and then sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from worldmodels.data.storage import episode_index, episode_length, load_episode, load_npz
from worldmodels.utils import STREAM_SPLIT, chunks, rng_for

LATENT_KEYS = ("mu", "logvar", "action", "reward", "terminated", "truncated")


def is_validation(seed: int, index: int, val_fraction: float) -> bool:
    """A per-episode, seeded coin: adding episodes never moves an old one between the splits."""
    return bool(rng_for(seed, STREAM_SPLIT, index).random() < val_fraction)


def split(paths: list[Path], seed: int, val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation) episodes; with val_fraction > 0 and two or more episodes, neither is empty."""
    val = [p for p in paths if is_validation(seed, episode_index(p) or 0, val_fraction)]
    train = [p for p in paths if p not in set(val)]
    if val_fraction > 0 and len(paths) >= 2:
        if not val:
            val, train = train[-1:], train[:-1]
        elif not train:
            train, val = val[:1], val[1:]
    return train, val


def prefetched(loads: list[Callable[[], Any]], depth: int = 1) -> Iterator[Any]:
    """Yield loads[i]() in order while up to `depth` of the loads after it run on threads (inflating and
    reading release the GIL), so reading overlaps the caller's work; at most depth + 1 results are held."""
    if not loads:
        return
    with ThreadPoolExecutor(depth) as pool:
        pending = deque(pool.submit(f) for f in loads[:depth])
        following = depth
        while pending:
            current = pending.popleft().result()
            if following < len(loads):
                pending.append(pool.submit(loads[following]))
                following += 1
            yield current


class FrameStream:
    """Batches of frames (B, 64, 64, 3) uint8, shuffled across the episodes of a shuffle buffer."""

    def __init__(self, paths: list[Path], batch_size: int, group: int, seed: int, stream: int):
        self.paths, self.B, self.G, self.seed, self.stream = (
            list(paths),
            batch_size,
            group,
            seed,
            stream,
        )
        self.lengths = np.array([episode_length(p) for p in self.paths])

    def _groups(self, epoch: int) -> list[np.ndarray]:
        order = rng_for(self.seed, self.stream, epoch).permutation(len(self.paths))
        return [np.asarray(g) for g in chunks(list(order), self.G)]

    def batches_in_epoch(self, epoch: int) -> int:
        return sum(-(-int(self.lengths[g].sum()) // self.B) for g in self._groups(epoch))

    @property
    def frames(self) -> int:
        return int(self.lengths.sum())

    def _load_group(self, members: np.ndarray) -> np.ndarray:
        """The frames of a group's episodes, read into one preallocated array (no transient copy)."""
        frames = np.empty((int(self.lengths[members].sum()), 64, 64, 3), np.uint8)
        i = 0
        for m in members:
            obs = load_episode(self.paths[m])["obs"]
            frames[i : i + len(obs)] = obs
            i += len(obs)
        return frames

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[np.ndarray]:
        """The epoch's batches, after skipping the first `skip` (whole groups are skipped unread)."""
        todo = []
        for g, members in enumerate(self._groups(epoch)):
            nb = -(-int(self.lengths[members].sum()) // self.B)
            if skip >= nb:
                skip -= nb
                continue
            todo.append((g, members, skip))
            skip = 0
        loads = [lambda m=m: self._load_group(m) for _, m, _ in todo]
        for (g, _, start), frames in zip(todo, prefetched(loads), strict=True):
            perm = rng_for(self.seed, self.stream, epoch, g + 1).permutation(len(frames))
            for b in range(start, -(-len(frames) // self.B)):
                yield frames[np.sort(perm[b * self.B : (b + 1) * self.B])]


class SequenceStream:
    """Padded batches of latent sequences for M; episodes longer than seq_len are cut into pieces.

    Within a shuffle buffer, pieces are bucketed by length before batching, so a batch is padded only to
    its own longest piece (random episodes vary in length; padding to seq_len would waste most compute).
    """

    def __init__(
        self, paths: list[Path], seq_len: int, batch_size: int, group: int, seed: int, stream: int
    ):
        self.paths, self.L, self.B, self.G = list(paths), seq_len, batch_size, group
        self.seed, self.stream = seed, stream
        self.pieces = []  # (path index, start, length)
        for i, p in enumerate(self.paths):
            T = len(load_npz(p, ("reward",), what="latent")["reward"])
            self.pieces += [(i, s, min(seq_len, T - s), T) for s in range(0, T, seq_len)]

    def _groups(self, epoch: int) -> list[list[tuple[int, int, int, int]]]:
        order = rng_for(self.seed, self.stream, epoch).permutation(len(self.pieces))
        return [[self.pieces[k] for k in g] for g in chunks(list(order), self.G)]

    def batches_in_epoch(self, epoch: int) -> int:
        return sum(-(-len(g) // self.B) for g in self._groups(epoch))

    @property
    def steps(self) -> int:
        return sum(p[2] for p in self.pieces)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
        todo = []
        for g, members in enumerate(self._groups(epoch)):
            nb = -(-len(members) // self.B)
            if skip >= nb:
                skip -= nb
                continue
            todo.append((g, members, skip))
            skip = 0

        def load(members: list) -> dict[int, dict[str, np.ndarray]]:
            return {
                i: load_npz(self.paths[i], LATENT_KEYS, what="latent")
                for i in {m[0] for m in members}
            }

        loads = [lambda m=m: load(m) for _, m, _ in todo]
        for (g, members, start), data in zip(todo, prefetched(loads), strict=True):
            rng = rng_for(self.seed, self.stream, epoch, g + 1)
            jitter = rng.random(len(members))
            ordered = [members[k] for k in np.lexsort((jitter, [m[2] for m in members]))]
            batches = list(chunks(ordered, self.B))
            for b in rng.permutation(len(batches))[start:]:
                yield make_sequence_batch(batches[b], data)


def make_sequence_batch(
    pieces: list, data: dict[int, dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Pad pieces (path index, start, length, T) to the longest: mu/logvar (B, L+1, Z), the rest (B, L).

    ``mask[b, t]``: step t is real. ``next_mask[b, t]``: z_{t+1} exists (it does not after the last step).
    """
    L = max(p[2] for p in pieces)
    B = len(pieces)
    first = data[pieces[0][0]]
    Z, A = first["mu"].shape[1], first["action"].shape[1]
    out = {
        "mu": np.zeros((B, L + 1, Z), np.float32),
        "logvar": np.zeros((B, L + 1, Z), np.float32),
        "action": np.zeros((B, L, A), np.float32),
        "reward": np.zeros((B, L), np.float32),
        "terminated": np.zeros((B, L), np.float32),
        "mask": np.zeros((B, L), bool),
        "next_mask": np.zeros((B, L), bool),
    }
    for b, (i, s, n, T) in enumerate(pieces):
        d = data[i]
        m = min(n + 1, T - s)  # z for steps s .. s+n (one past the piece when it exists)
        out["mu"][b, :m] = d["mu"][s : s + m]
        out["logvar"][b, :m] = d["logvar"][s : s + m]
        out["action"][b, :n] = d["action"][s : s + n]
        out["reward"][b, :n] = d["reward"][s : s + n]
        out["terminated"][b, :n] = d["terminated"][s : s + n]
        out["mask"][b, :n] = True
        out["next_mask"][b, : m - 1] = True
    return out
