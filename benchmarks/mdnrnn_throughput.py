"""M's speed: training throughput (sequence-steps/s) and single-step throughput at batch 1, 64 and 1024.

    python benchmarks/mdnrnn_throughput.py

Doom-size M (z 64, 512 units, done head), batch 100 sequences of 300 steps, bf16 autocast on and off.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import preset  # noqa: E402
from worldmodels.models.mdnrnn import MDNRNN  # noqa: E402
from worldmodels.train.mdnrnn import mdnrnn_losses  # noqa: E402


def train_steps_per_s(amp: bool, B: int = 100, T: int = 300, n: int = 4) -> float:
    torch.manual_seed(0)
    m = MDNRNN(64, 1, 512, 5, done_head=True)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    batch = {
        "mu": torch.randn(B, T + 1, 64), "logvar": torch.full((B, T + 1, 64), -2.0),
        "action": torch.randn(B, T, 1), "reward": torch.zeros(B, T), "terminated": torch.zeros(B, T),
        "mask": torch.ones(B, T, dtype=torch.bool), "next_mask": torch.ones(B, T, dtype=torch.bool),
    }  # fmt: skip
    cfg = preset("doom")
    for i in range(n + 1):
        if i == 1:
            t = time.perf_counter()
        losses, _ = mdnrnn_losses(m, batch, cfg, None, amp)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_value_(m.parameters(), 1.0)
        opt.step()
    return B * T * n / (time.perf_counter() - t)


@torch.no_grad()
def step_per_s(batch: int, amp: bool, n: int = 200) -> float:
    m = MDNRNN(64, 1, 512, 5, done_head=True).eval()
    z, a = torch.randn(batch, 64), torch.randn(batch, 1)
    state = m.initial_state(batch)
    for i in range(n + 10):
        if i == 10:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            _, state = m.step(z, a, state)
    return batch * n / (time.perf_counter() - t)


def main() -> None:
    result = {}
    for amp in (False, True):
        result[f"amp_{amp}"] = {
            "train_sequence_steps_per_s": round(train_steps_per_s(amp)),
            **{f"step_batch_{b}_per_s": round(step_per_s(b, amp)) for b in (1, 64, 1024)},
        }
    report("mdnrnn_throughput", result)


if __name__ == "__main__":
    main()
