"""Small shared pieces: atomic writes, checkpoints as data, metrics, seeds, devices."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.errors import WorldModelsError, install_hint

CHECKPOINT_FORMAT = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename: a reader sees all or nothing."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised while writing `path` (a full disk says only "No space left on device") names
    the file it was writing, so the CLI's one line says where."""
    try:
        yield
    except OSError as e:
        if not e.filename or str(e.filename).endswith(".tmp"):  # the temporary: name the file
            e.filename = str(path)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: Path, header: dict[str, Any], tensors: dict[str, Any]) -> None:
    """A checkpoint is data: a JSON header plus state dicts, loadable with weights_only=True."""
    header = {"format": CHECKPOINT_FORMAT, **header}
    buf = io.BytesIO()
    torch.save({"header": json.dumps(header), **tensors}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_header(path: Path, kind: str) -> dict[str, Any]:
    """A checkpoint's header alone (tensors are memory-mapped, not read); errors as load_checkpoint."""
    return load_checkpoint(path, kind, mmap=True)[0]


def checkpoint_finished(path: Path, kind: str) -> bool:
    """Whether a stage's checkpoint exists and says its training finished."""
    return Path(path).exists() and bool(read_header(path, kind).get("finished"))


def load_checkpoint(
    path: Path, kind: str, mmap: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load (header, tensors) or raise a one-line error naming the file."""
    path = Path(path)
    if not path.exists():
        raise WorldModelsError(f"{path}: missing; run the stage that writes it first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        header = json.loads(blob.pop("header"))
    except Exception as e:  # a truncated or foreign file
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise WorldModelsError(f"{path}: not a readable checkpoint ({reason})") from None
    if header.get("kind") != kind:
        raise WorldModelsError(
            f"{path}: holds a {header.get('kind')!r} checkpoint, expected {kind!r}"
        )
    if header.get("format") != CHECKPOINT_FORMAT:
        raise WorldModelsError(f"{path}: checkpoint format {header.get('format')} is not supported")
    return header, blob


class Metrics:
    """Appends one JSON object a line to RUN_DIR/metrics.jsonl (the record); TensorBoard optionally."""

    def __init__(self, run_dir: Path, stage: str, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.stage = stage
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise WorldModelsError(
                    f"--tensorboard needs the tensorboard package: {install_hint('tensorboard')}"
                ) from None
            self._tb = SummaryWriter(str(Path(run_dir) / "tb" / stage))

    def log(self, step: int, **values: float) -> None:
        row = {"stage": self.stage, "step": int(step), "time": round(time.time(), 3)}
        row.update({k: float(v) for k, v in values.items()})
        with naming(self.path), open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of metrics.jsonl; a torn last line (a kill mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def seed_for(seed: int, *key: int) -> int:
    """A 32-bit seed derived from the run seed and a key path (e.g. (stream, index))."""
    return int(
        np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)).generate_state(1)[0]
    )


def rng_for(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


# Streams of derived seeds, so that no two uses of the run seed collide.
(STREAM_COLLECT, STREAM_SPLIT, STREAM_VAE, STREAM_MDN, STREAM_ES, STREAM_EVAL, STREAM_RENDER,
 STREAM_ITERATE, STREAM_ROUND_EVAL, STREAM_DREAM_STARTS) = range(10)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """A device setting (auto, cpu, cuda, cuda:N, mps) as a torch device present on this machine, or a
    one-line error saying what is missing. A CUDA device turns on cuDNN's deterministic algorithms: without
    them two trainings of V from one seed differed by up to 1.5e-2 in a weight after 20 updates on an
    H200, and a stopped V did not resume to an uninterrupted one's weights."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WorldModelsError(f"--device {name}: no CUDA device is available here")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise WorldModelsError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise WorldModelsError("--device mps: no Apple GPU (MPS) is available to this torch")
    return torch.device(name)


@cache
def bf16_native(device_type: str) -> bool:
    """Whether a device of this type runs bf16 math natively: a CPU with AVX512-BF16 or AMX, a GPU that
    supports bf16 (any other device: as asked). Elsewhere autocast emulates it: on a 2-core AVX2-only EPYC,
    V trained at 9.0 images/s in bf16 against 308.3 in fp32 and M's bf16 LSTM did not run at all
    (benchmarks/cpu_bf16.py)."""
    if device_type == "cpu":
        cpu = torch.cpu
        return any(
            getattr(cpu, f, lambda: False)()
            for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True


def cpu_precision() -> dict[str, str | bool]:
    """What this machine's CPU gives V and M: its vector capability and whether `vae.amp` / `mdnrnn.amp`
    mean bf16 here (only where it is native); `worldmodels info` prints it."""
    return {"capability": torch.backends.cpu.get_cpu_capability(), "bf16": bf16_native("cpu")}


def use_bf16(device: torch.device, amp: bool) -> bool:
    """Whether `vae.amp` / `mdnrnn.amp` = `amp` means bf16 on this device: only where it is native."""
    return amp and bf16_native(device.type)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast where `enabled` and the device runs bf16 natively (use_bf16); else a no-op context."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(device, enabled)
    )


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def usable_cores() -> int:
    """Cores this process may run on (its affinity on Linux, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chunks(seq: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
