"""M's speed: training throughput (sequence-steps/s) plain, with dropout and with self-feeding, and
single-step throughput at batch 1, 64 and 1024.

    python benchmarks/mdnrnn_throughput.py [--device cpu|cuda] [--dropout 0.1] [--self-feed 0.5]
        [--batch 100] [--seq 300]

Doom-size M (z 64, 512 units, done head), by default batch 100 sequences of 300 steps, bf16 autocast on and off.
Dropout (`mdnrnn.dropout`) runs the LSTM step by step (its masks are fixed per sequence), the plain M
runs the fused LSTM: both are measured in the same run, so their ratio is this machine's. Self-feeding
(`mdnrnn.self_feed`) adds a pass without gradient over the real z before each update.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report, sync_device, synthetic_m_batch  # noqa: E402

from worldmodels.config import preset, with_overrides  # noqa: E402
from worldmodels.models.mdnrnn import MDNRNN  # noqa: E402
from worldmodels.train.mdnrnn import mdnrnn_losses  # noqa: E402
from worldmodels.utils import autocast  # noqa: E402


def train_steps_per_s(
    device: torch.device,
    amp: bool,
    dropout: float,
    B: int = 100,
    T: int = 300,
    n: int = 4,
    warmup: int = 1,
    clip: bool = True,
    self_feed: float = 0.0,
) -> float:
    """Sequence-steps/s of n timed updates after `warmup` untimed ones (gradients clipped at 1 if clip)."""
    torch.manual_seed(0)
    m = MDNRNN(64, 1, 512, 5, done_head=True, dropout=dropout).to(device).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    batch = synthetic_m_batch(B, T, 64, 1, device)
    gen = torch.Generator(device=device).manual_seed(0)
    cfg = with_overrides(preset("doom"), {"mdnrnn.self_feed": self_feed})
    for i in range(n + warmup):
        if i == warmup:
            sync_device(device)
            t = time.perf_counter()
        losses, _ = mdnrnn_losses(m, batch, cfg, gen, amp)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if clip:
            torch.nn.utils.clip_grad_value_(m.parameters(), 1.0)
        opt.step()
    sync_device(device)
    return B * T * n / (time.perf_counter() - t)


@torch.no_grad()
def step_per_s(device: torch.device, batch: int, amp: bool, n: int = 200) -> float:
    m = MDNRNN(64, 1, 512, 5, done_head=True).to(device).eval()
    z, a = torch.randn(batch, 64, device=device), torch.randn(batch, 1, device=device)
    state = m.initial_state(batch, device)
    for i in range(n + 10):
        if i == 10:
            sync_device(device)
            t = time.perf_counter()
        with autocast(device, amp):
            _, state = m.step(z, a, state)
    sync_device(device)
    return batch * n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="torch device to measure on (default: cpu)")
    p.add_argument("--dropout", type=float, default=0.1,
                   help="dropout rate of the step-by-step LSTM row (default: 0.1)")  # fmt: skip
    p.add_argument("--self-feed", type=float, default=0.5,
                   help="mdnrnn.self_feed of the self-feeding row (default: 0.5)")  # fmt: skip
    p.add_argument(
        "--batch", type=int, default=100, help="training batch, sequences (default: 100)"
    )
    p.add_argument("--seq", type=int, default=300, help="training sequence length (default: 300)")
    args = p.parse_args()
    device = torch.device(args.device)
    result = {"device": str(device)}
    for amp in (False, True):
        fused = train_steps_per_s(device, amp, 0.0, args.batch, args.seq)
        unrolled = train_steps_per_s(device, amp, args.dropout, args.batch, args.seq)
        fed = train_steps_per_s(device, amp, 0.0, args.batch, args.seq, self_feed=args.self_feed)
        result[f"amp_{amp}"] = {
            "train_sequence_steps_per_s": round(fused),
            f"train_dropout_{args.dropout}_sequence_steps_per_s": round(unrolled),
            "dropout_time_ratio": round(fused / unrolled, 2),
            f"train_self_feed_{args.self_feed}_sequence_steps_per_s": round(fed),
            "self_feed_time_ratio": round(fused / fed, 2),
            **{f"step_batch_{b}_per_s": round(step_per_s(device, b, amp)) for b in (1, 64, 1024)},
        }
    report(
        "mdnrnn_throughput" if device.type == "cpu" else f"mdnrnn_throughput_{device.type}", result
    )


if __name__ == "__main__":
    main()
