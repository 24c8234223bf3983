"""What cuDNN's deterministic algorithms cost: V's and M's training speed with them on and off.

    python benchmarks/cudnn_determinism.py [--device cuda] [--updates 40]

A CUDA device turns them on (`utils.resolve_device`), because without them two trainings of V from one seed
differed and a stopped V did not resume to an uninterrupted one's weights. Measured side by side in one
run: V (batch 100 of 64x64 frames) in images/s and M (Doom size, batch 32 of 500 steps, `doom-cpu`'s batch)
in sequence-steps/s, fp32 and bf16, deterministic on and off. On a CPU the setting does nothing, so the
two columns only show the noise of the measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import preset  # noqa: E402
from worldmodels.models.mdnrnn import MDNRNN  # noqa: E402
from worldmodels.models.vae import ConvVAE, vae_loss  # noqa: E402
from worldmodels.train.mdnrnn import mdnrnn_losses  # noqa: E402
from worldmodels.utils import autocast  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _set_deterministic(on: bool) -> None:
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def vae_images_per_s(device: torch.device, amp: bool, updates: int) -> float:
    torch.manual_seed(0)
    model = ConvVAE(64).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(100, 3, 64, 64, device=device)
    for i in range(updates + 5):
        if i == 5:
            _sync(device)
            t = time.perf_counter()
        with autocast(device, amp):
            recon, mu, logvar = model(x)
        loss, _, _ = vae_loss(x, recon, mu, logvar, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return 100 * updates / (time.perf_counter() - t)


def mdnrnn_steps_per_s(
    device: torch.device, amp: bool, updates: int, B: int = 32, T: int = 500
) -> float:
    torch.manual_seed(0)
    m = MDNRNN(64, 1, 512, 5, done_head=True).to(device).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    batch = {
        "mu": torch.randn(B, T + 1, 64), "logvar": torch.full((B, T + 1, 64), -2.0),
        "action": torch.randn(B, T, 1), "reward": torch.zeros(B, T), "terminated": torch.zeros(B, T),
        "mask": torch.ones(B, T, dtype=torch.bool), "next_mask": torch.ones(B, T, dtype=torch.bool),
    }  # fmt: skip
    batch = {k: v.to(device) for k, v in batch.items()}
    gen = torch.Generator(device=device).manual_seed(0)
    cfg = preset("doom")
    for i in range(updates + 2):
        if i == 2:
            _sync(device)
            t = time.perf_counter()
        losses, _ = mdnrnn_losses(m, batch, cfg, gen, amp)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
    _sync(device)
    return B * T * updates / (time.perf_counter() - t)


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
