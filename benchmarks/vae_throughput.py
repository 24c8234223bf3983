"""V's training speed and memory: the bare model against `train-vae` streaming from disk.

    python benchmarks/vae_throughput.py [--updates 150]

Measures (side by side, same batch size 100, same settings): images/s of the bare model (forward, backward,
Adam on a fixed in-memory batch) and of `train-vae` on 100 collected Doom episodes; then the peak memory
(max RSS) of `train-vae` over 100 and over 1,000 episodes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import report, sync_device  # noqa: E402

from worldmodels.config import preset, save_config, with_overrides  # noqa: E402
from worldmodels.data.collect import collect  # noqa: E402
from worldmodels.models.vae import ConvVAE, vae_loss  # noqa: E402
from worldmodels.utils import autocast  # noqa: E402


def bare_images_per_s(
    updates: int,
    amp: bool,
    device: torch.device | None = None,
    channels_last: bool | None = None,
) -> float:
    """Images/s of the bare model: forward, backward and Adam on one in-memory batch of 100, 5 untimed
    updates first; channels_last defaults to amp (what `train-vae` does on a CPU)."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    model = ConvVAE(64).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(100, 3, 64, 64, device=device)
    if channels_last is None:
        channels_last = amp
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    for i in range(updates + 5):
        if i == 5:
            sync_device(device)
            t = time.perf_counter()
        with autocast(device, amp):
            recon, mu, logvar = model(x)
        loss, _, _ = vae_loss(x, recon, mu, logvar, 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync_device(device)
    return 100 * updates / (time.perf_counter() - t)


def train_vae_run(episodes_dir: Path, updates: int, amp: bool) -> tuple[float, int]:
    """(images/s from the run's own metrics, peak RSS in MiB) of `worldmodels train-vae` in a child."""
    with tempfile.TemporaryDirectory() as d:
        run = Path(d)
        (run / "episodes").symlink_to(episodes_dir)
        cfg = with_overrides(preset("doom"), {"vae.max_updates": updates, "vae.amp": amp})
        save_config(cfg, run / "config.json")
        # A wrapper process runs the CLI and reports its children's peak RSS: one fresh measurement each.
        wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
        cmd = [
            sys.executable,
            "-m",
            "worldmodels.cli",
            "train-vae",
            "--run-dir",
            str(run),
            "--quiet",
        ]
        out = subprocess.run(
            [sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True
        )
        peak_kib = int(out.stdout.strip().splitlines()[-1])
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        ips = [r["perf/images_per_s"] for r in rows if "perf/images_per_s" in r][-1]
        return ips, peak_kib // 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=150, help="Updates per measurement.")
    p.add_argument("--data", type=Path, default=Path("runs/bench-episodes"),
                   help="Where 1,000 Doom episodes are collected (kept for reruns).")  # fmt: skip
    args = p.parse_args()
    for n in (100, 1000):
        cfg = with_overrides(preset("doom"), {"collect.episodes": n})
        save_config(cfg, args.data / f"n{n}" / "config.json")
        collect(args.data / f"n{n}", cfg, progress=False)
    result = {}
    for amp in (True, False):
        bare = bare_images_per_s(args.updates, amp)
        ips, _ = train_vae_run((args.data / "n100" / "episodes").resolve(), args.updates, amp)
        result[f"amp_{amp}"] = {"bare_images_per_s": round(bare), "train_vae_images_per_s": round(ips),
                                "pipeline_vs_bare": round(ips / bare, 3)}  # fmt: skip
    # Peak memory of the whole train-vae process, over 100 and over 1,000 episodes.
    _, rss100 = train_vae_run((args.data / "n100" / "episodes").resolve(), 50, True)
    _, rss1000 = train_vae_run((args.data / "n1000" / "episodes").resolve(), 50, True)
    result["peak_rss_mib"] = {"100_episodes": rss100, "1000_episodes": rss1000,
                              "ratio_1000_vs_100": round(rss1000 / rss100, 3)}  # fmt: skip
    result["updates"] = args.updates
    report("vae_throughput", result)


if __name__ == "__main__":
    main()
