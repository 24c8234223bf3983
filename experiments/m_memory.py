"""Does M's memory hold over a whole long episode, though it trains on pieces of at most seq_len steps?

    python -m experiments.m_memory --out runs/m-memory [--agent doom] [--episodes 128] [--seed 555]

M trains on episodes cut into pieces of `mdnrnn.seq_len` (500 for Doom) steps, each piece from a zero
memory, but the real-env agent and the dream run M from the first frame to the last, up to 2,100 steps. The
agent (a shipped one, `--agent doom`, or a run directory) plays real episodes (no exploration), recorded
and encoded with its V into OUT; then M reads each recorded episode twice, teacher-forced with the same z
samples: once without a break (as the agent and the dream run it) and once restarted from a zero memory
every seq_len steps (as it trained). Printed: M's NLL of the next z, how often its done head fires (p > 0.5)
on steps that are not the last, by step of the episode, and the share of deaths it recalls. If the unbroken
memory drifted past seq_len steps, its NLL and false alarms there would rise above the restarted one's.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from experiments._common import parser
from worldmodels.agent import load_controller
from worldmodels.config import load_config, save_config, with_overrides
from worldmodels.data.storage import list_episodes, load_npz
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.models.mdnrnn import mdn_nll
from worldmodels.models.vae import sample_z
from worldmodels.pretrained import pretrained_dir
from worldmodels.train.iterate import record_agent_episodes
from worldmodels.train.vae import encode_latents

EDGES = [0, 250, 500, 750, 1000, 1500, 2100]


def record(agent: Path, out: Path, episodes: int, seed: int) -> None:
    """The agent's V, M and C copied into OUT; its real episodes recorded into OUT/episodes, encoded."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vae.pt", "mdnrnn.pt", "controller.pt"):
        if not (out / name).exists():
            shutil.copy(agent / name, out / name)
    cfg = with_overrides(load_config(agent / "config.json"), {"iterate.explore": 0.0, "seed": seed})
    save_config(cfg, out / "config.json")
    params = load_controller(out / "controller.pt", cfg)
    # indices 1..N: the episodes (and seeds) this experiment recorded before record_agent_episodes existed
    record_agent_episodes(out, cfg, range(1, episodes + 1), out / "mdnrnn.pt", params)
    encode_latents(out, cfg, progress=True)


def read(m: torch.nn.Module, z: torch.Tensor, a: torch.Tensor, piece: int) -> tuple:
    """M teacher-forced over one episode in pieces of `piece` steps, each from a zero memory: the NLL of
    every next z (T - 1,) and the done logit of every step (T,)."""
    T = len(a)
    nll, logit = [], []
    for s in range(0, T, piece):
        e = min(T, s + piece)
        out, _ = m(z[None, s:e], a[None, s:e])
        target = z[None, s + 1 : e + 1]
        n = target.shape[1]
        nll.append(
            mdn_nll(out.logpi[:, :n], out.mu[:, :n], out.logsigma[:, :n], target).mean(-1)[0]
        )
        logit.append(out.done_logit[0])
    return torch.cat(nll).numpy(), torch.cat(logit).numpy()


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--out", type=Path, required=True, help="Where the episodes and copies go.")
    ap.add_argument("--agent", default="doom", help="A shipped agent's name or a run directory.")
    ap.add_argument("--episodes", type=int, default=128, help="Real episodes to record.")
    ap.add_argument("--seed", type=int, default=555, help="Seed of the recorded episodes.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    agent = Path(args.agent) if Path(args.agent).is_dir() else pretrained_dir(args.agent)
    if len(list_episodes(args.out / "episodes")) < args.episodes:
        record(agent, args.out, args.episodes, args.seed)
    cfg = load_config(args.out / "config.json")
    m = load_mdnrnn(args.out / "mdnrnn.pt", cfg, "cpu").eval()
    gen = torch.Generator().manual_seed(0)
    by_mode: dict[str, list] = {"unbroken": [], "restarted": []}
    lengths = []
    for p in sorted((args.out / "latents").glob("ep_*.npz")):
        x = load_npz(p, ("mu", "logvar", "action", "terminated"), what="latent")
        mu, logvar = torch.tensor(x["mu"]), torch.tensor(x["logvar"])
        z = sample_z(mu, logvar, gen)  # as M's training and the real-env agent sample it
        a = torch.tensor(x["action"])
        lengths.append(len(a))
        with torch.no_grad():
            for mode, piece in (("unbroken", len(a)), ("restarted", cfg.mdnrnn.seq_len)):
                by_mode[mode].append((*read(m, z, a, piece), bool(x["terminated"][-1])))
    lengths = np.array(lengths)
    print(f"{len(lengths)} episodes, mean length {lengths.mean():.1f}, "
          f"{(lengths > cfg.mdnrnn.seq_len).sum()} longer than seq_len {cfg.mdnrnn.seq_len}")  # fmt: skip
    print(
        "| steps | steps scored | NLL unbroken | NLL restarted | done fires unbroken | restarted |"
    )
    print("|---|---|---|---|---|---|")
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        row = []
        for mode in by_mode:
            nll = np.concatenate([n[lo:hi] for n, _, _ in by_mode[mode]])
            fires = np.concatenate([d[:-1][lo:hi] > 0 for _, d, _ in by_mode[mode]])
            row.append((len(nll), nll.mean(), fires.mean()))
        (n, u, fu), (_, r, fr) = row
        print(f"| {lo}-{hi} | {n} | {u:.4f} | {r:.4f} | {100 * fu:.2f} % | {100 * fr:.2f} % |")
    for mode, eps in by_mode.items():
        deaths = [d[-1] > 0 for _, d, died in eps if died]
        print(
            f"{mode}: {np.mean(deaths):.0%} of {len(deaths)} deaths recalled (p > 0.5 on the last step)"
        )


if __name__ == "__main__":
    main()
