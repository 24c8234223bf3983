"""What cuDNN's deterministic algorithms cost: V's and M's training speed with them on and off.

    python benchmarks/cudnn_determinism.py [--device cuda] [--updates 40]

A CUDA device turns them on (`utils.resolve_device`), because without them two trainings of V from one seed
differed and a stopped V did not resume to an uninterrupted one's weights. Measured side by side in one
run: V (batch 100 of 64x64 frames) in images/s and M (Doom size, batch 32 of 500 steps, `doom-cpu`'s batch)
in sequence-steps/s, fp32 and bf16, deterministic on and off. A GPU benchmark, so not in `make bench`
(whose rows are the 2-core dev machine's): on a CPU the setting does nothing, and bf16 M without AMX is slow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402
from mdnrnn_throughput import train_steps_per_s  # noqa: E402
from vae_throughput import bare_images_per_s  # noqa: E402


def vae_images_per_s(device: torch.device, amp: bool, updates: int) -> float:
    return bare_images_per_s(updates, amp, device, channels_last=False)


def mdnrnn_steps_per_s(device: torch.device, amp: bool, updates: int) -> float:
    """`doom-cpu`'s batch: 32 sequences of 500 steps, 2 untimed updates, no gradient clipping."""
    return train_steps_per_s(device, amp, 0.0, B=32, T=500, n=updates, warmup=2, clip=False)


def _set_deterministic(on: bool) -> None:
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device to measure on (default: cuda where present, else cpu)")  # fmt: skip
    p.add_argument("--updates", type=int, default=40, help="timed updates per row (default: 40)")
    args = p.parse_args()
    device = torch.device(args.device)
    rows = []
    for amp in (False, True):
        row: dict = {"bf16": amp}
        for on in (False, True):  # off first, then on, then off again: the first row warms up
            _set_deterministic(on)
            key = "deterministic" if on else "default"
            row[f"vae_images_per_s_{key}"] = round(vae_images_per_s(device, amp, args.updates), 1)
            row[f"mdnrnn_seq_steps_per_s_{key}"] = round(
                mdnrnn_steps_per_s(device, amp, max(4, args.updates // 4)), 1
            )
        _set_deterministic(False)
        row["vae_images_per_s_default_again"] = round(
            vae_images_per_s(device, amp, args.updates), 1
        )
        row["vae_slowdown"] = round(
            min(row["vae_images_per_s_default"], row["vae_images_per_s_default_again"])
            / row["vae_images_per_s_deterministic"],
            3,
        )
        row["mdnrnn_slowdown"] = round(
            row["mdnrnn_seq_steps_per_s_default"] / row["mdnrnn_seq_steps_per_s_deterministic"], 3
        )
        rows.append(row)
    report(
        f"cudnn_determinism_{device.type}",
        {"device": str(device), "updates": args.updates, "rows": rows},
    )


if __name__ == "__main__":
    main()
