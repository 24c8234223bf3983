"""Whether bf16 pays on this CPU: V's and M's training in fp32 against bf16 autocast, side by side, and what the
library chooses here (`utils.bf16_native`: bf16 only where the CPU has AVX512-BF16 or AMX).

    python benchmarks/cpu_bf16.py [--seq 1000] [--v-batch 100]

V: the paper's ConvVAE (z 32), updates of --v-batch frames. M: CarRacing-size (z 32, 256 units, reward and
done heads), updates of 16 sequences of --seq steps. bf16 is forced here (past the library's gate), so a CPU
that emulates it shows the cost; an M that cannot run in bf16 is reported as such.
Run it on a quiet machine: with another job on the same cores, oneDNN's kernels slow down many times over.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report, synthetic_m_batch  # noqa: E402

from worldmodels import utils  # noqa: E402
from worldmodels.config import preset  # noqa: E402
from worldmodels.models.mdnrnn import MDNRNN  # noqa: E402
from worldmodels.models.vae import ConvVAE, vae_loss  # noqa: E402
from worldmodels.train.mdnrnn import mdnrnn_losses  # noqa: E402


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


def m_sequence_steps_per_s(bf16: bool, seq: int) -> float | str:
    torch.manual_seed(0)
    m = MDNRNN(32, 3, 256, 5, reward_head=True, done_head=True).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    B = 16
    batch = synthetic_m_batch(B, seq, 32, 3)
    cfg = preset("carracing-cpu")
    gen = torch.Generator().manual_seed(0)

    def update() -> None:
        losses, _ = mdnrnn_losses(m, batch, cfg, gen, True)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()

    native = utils.bf16_native
    utils.bf16_native = lambda device_type: bf16  # M's own autocast, forced on or off
    try:
        return round(B * seq / best_of(update, 2))
    except RuntimeError as e:  # oneDNN without a bf16 LSTM for this CPU
        return f"fails: {str(e).splitlines()[0]}"
    finally:
        utils.bf16_native = native


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq", type=int, default=1000, help="M's sequence length (default: 1000)")
    p.add_argument("--v-batch", type=int, default=100, help="V's batch, frames (default: 100)")
    args = p.parse_args()
    native = utils.bf16_native("cpu")
    v32, v16 = v_images_per_s(False, args.v_batch), v_images_per_s(True, args.v_batch)
    m32, m16 = m_sequence_steps_per_s(False, args.seq), m_sequence_steps_per_s(True, args.seq)
    report("cpu_bf16", {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": native,
        "v_train_images_per_s": {"fp32": round(v32, 1), "bf16": round(v16, 1), "fp32_over_bf16": round(v32 / v16, 2)},
        "m_train_sequence_steps_per_s": {"fp32": m32, "bf16": m16},
    })  # fmt: skip


if __name__ == "__main__":
    main()
