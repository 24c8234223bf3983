"""Helpers shared by the benchmark scripts (not a test: these print numbers, they assert nothing)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def report(name: str, result: dict) -> None:
    result = {"benchmark": name, "machine": machine(), **result}
    print(json.dumps(result, indent=2))
    out = Path(os.environ.get("BENCH_OUT", "benchmarks/results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def sync_device(device: torch.device) -> None:
    """Wait for a CUDA device's queued work, so a timer measures it (nothing on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_m_batch(B: int, T: int, z: int, a: int, device: torch.device | str = "cpu") -> dict:
    """A batch shaped like M's training data (B whole sequences of T steps, z latents, a action floats):
    random latents and actions, no reward, no episode ends, every step valid. Throughput needs only shapes."""
    batch = {
        "mu": torch.randn(B, T + 1, z),
        "logvar": torch.full((B, T + 1, z), -2.0),
        "action": torch.randn(B, T, a),
        "reward": torch.zeros(B, T),
        "terminated": torch.zeros(B, T),
        "mask": torch.ones(B, T, dtype=torch.bool),
        "next_mask": torch.ones(B, T, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}
