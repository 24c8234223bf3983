"""What this CPU runs fast: V's training in fp32 against bf16 autocast, and M's training with oneDNN's LSTM
against PyTorch's own kernel, side by side; and what the library chooses here (`utils.use_bf16`,
`utils.lstm_kernels`).

    python benchmarks/cpu_kernels.py [--seq 200] [--v-batch 20]

V: the paper's ConvVAE (z 32), updates of --v-batch frames. M: CarRacing-size (z 32, 256 units, reward and
done heads), updates of 16 sequences of --seq steps, fp32. Short on purpose: emulated bf16 and a slow oneDNN
LSTM take seconds an update.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report  # noqa: E402

from worldmodels.config import preset  # noqa: E402
from worldmodels.models import mdnrnn  # noqa: E402
from worldmodels.models.mdnrnn import MDNRNN  # noqa: E402
from worldmodels.models.vae import ConvVAE, vae_loss  # noqa: E402
from worldmodels.train.mdnrnn import mdnrnn_losses  # noqa: E402
from worldmodels.utils import bf16_native, onednn_lstm_is_slow  # noqa: E402


def best_of(fn, n: int) -> float:
    """Seconds of the fastest of n calls after one untimed call."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def v_images_per_s(bf16: bool, batch: int) -> float:
    torch.manual_seed(0)
    m = ConvVAE(32)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 64, 64)

    def update() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            recon, mu, logvar = m(x)
            loss = vae_loss(x, recon.float(), mu.float(), logvar.float(), 0.5)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / best_of(update, 2)


def m_sequence_steps_per_s(onednn: bool, seq: int) -> float:
    torch.manual_seed(0)
    m = MDNRNN(32, 3, 256, 5, reward_head=True, done_head=True).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    B = 16
    batch = {
        "mu": torch.randn(B, seq + 1, 32), "logvar": torch.full((B, seq + 1, 32), -2.0),
        "action": torch.randn(B, seq, 3), "reward": torch.zeros(B, seq), "terminated": torch.zeros(B, seq),
        "mask": torch.ones(B, seq, dtype=torch.bool), "next_mask": torch.ones(B, seq, dtype=torch.bool),
    }  # fmt: skip
    cfg = preset("carracing-cpu")
    gen = torch.Generator().manual_seed(0)

    def update() -> None:
        with torch.backends.mkldnn.flags(enabled=onednn):
            losses, _ = mdnrnn_losses(m, batch, cfg, gen, False)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()

    chosen = mdnrnn.lstm_kernels
    mdnrnn.lstm_kernels = lambda device: nullcontext()  # this benchmark chooses the kernel itself
    try:
        return B * seq / best_of(update, 2)
    finally:
        mdnrnn.lstm_kernels = chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=200, help="M's sequence length (default: 200)")
    p.add_argument("--v-batch", type=int, default=20, help="V's batch, frames (default: 20)")
    args = p.parse_args()
    v32, v16 = v_images_per_s(False, args.v_batch), v_images_per_s(True, args.v_batch)
    m_own, m_dnn = m_sequence_steps_per_s(False, args.seq), m_sequence_steps_per_s(True, args.seq)
    report("cpu_kernels", {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native("cpu"),
        "library_uses_bf16_when_amp": bf16_native("cpu"),
        "library_uses_pytorch_lstm": onednn_lstm_is_slow(),
        "v_train_images_per_s": {"fp32": round(v32, 1), "bf16": round(v16, 1), "fp32_over_bf16": round(v32 / v16, 2)},
        "m_train_sequence_steps_per_s": {"pytorch_lstm": round(m_own), "onednn_lstm": round(m_dnn),
                                         "pytorch_over_onednn": round(m_own / m_dnn, 2)},
    })  # fmt: skip


if __name__ == "__main__":
    main()
