"""The agents shipped inside the package (`--pretrained NAME`): a run directory's config and checkpoints."""

from __future__ import annotations

import argparse
import filecmp
import shutil
from pathlib import Path
from typing import Any

from worldmodels.errors import WorldModelsError
from worldmodels.lock import RunDirLock

ROOT = Path(__file__).parent / "pretrained"
FILES = ("config.json", "vae.pt", "mdnrnn.pt", "controller.pt", "latents_starts.npz")


def pretrained_dir(name: str) -> Path:
    """A shipped agent's folder by NAME, or an exported agent's folder given as a path."""
    path = ROOT / name
    if (path / "controller.pt").exists():
        return path
    path = Path(name)
    if path.is_dir() and all((path / f).exists() for f in ("config.json", "vae.pt", "mdnrnn.pt")):
        return path
    shipped = sorted(p.name for p in ROOT.iterdir() if (p / "controller.pt").exists())
    raise WorldModelsError(
        f"--pretrained {name}: neither a shipped agent ({', '.join(shipped)}) nor a folder written by "
        "`worldmodels export`"
    )


def pretrained_run_dir(args: argparse.Namespace) -> Path:
    """Where a --pretrained command works: --run-dir, or runs/pretrained-NAME."""
    return Path(args.run_dir or Path("runs") / f"pretrained-{Path(args.pretrained).name}")


def pretrained_command(
    command: str,
    args: argparse.Namespace,
    overrides: dict[str, Any],
    progress: bool,
    unsaved: dict[str, Any] | None = None,
    lock: RunDirLock | None = None,
) -> int:
    """Copy an agent (shipped or exported) into the run directory (default runs/pretrained-NAME), then
    evaluate it, render it, or train a new C on its V and M. `unsaved`: overrides for this command
    only, not saved in the run's config (evaluate --out)."""
    from worldmodels import pipeline

    src = pretrained_dir(args.pretrained)
    run_dir = pretrained_run_dir(args)
    pipeline.check_run_dir(run_dir)
    for name in ("vae.pt", "mdnrnn.pt"):  # a run directory that holds another agent is not reused
        if (run_dir / name).exists() and not filecmp.cmp(src / name, run_dir / name, shallow=False):
            raise WorldModelsError(
                f"--run-dir {run_dir}: holds another agent than --pretrained {args.pretrained} "
                f"({name} differs); use another --run-dir"
            )
    if command == "train-controller" and (run_dir / "controller.pt").exists():
        if (src / "controller.pt").exists() and filecmp.cmp(
            src / "controller.pt", run_dir / "controller.pt", shallow=False
        ):
            raise WorldModelsError(
                f"--run-dir {run_dir}: holds {args.pretrained}'s own C; train a new one in another --run-dir"
            )
    wanted = [f for f in FILES if not (command == "train-controller" and f == "controller.pt")]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if lock is not None:  # a new run directory exists only now
            lock.acquire(run_dir, command)
        for name in wanted:
            if (src / name).exists() and not (run_dir / name).exists():
                shutil.copy2(src / name, run_dir / name)
    except OSError as e:
        raise WorldModelsError(f"--run-dir {run_dir}: cannot write there ({e.strerror})") from None
    cfg = pipeline.resolve(run_dir, None, overrides, unsaved=unsaved)
    if command == "evaluate":
        from worldmodels.evaluate import evaluate_command

        return evaluate_command(
            run_dir, cfg, args.policy, args.where, progress, args.env_id, args.out
        )
    if command == "train-controller":
        from worldmodels.stages import get

        pipeline.run_stage(get("train-controller"), run_dir, cfg, progress)
        print(f"trained {run_dir / 'controller.pt'} on {src}'s V and M")
        return 0
    from worldmodels.render import render_run

    paths = render_run(run_dir, cfg)
    print(f"wrote {paths['real']} and {paths['dream']}")
    return 0


def export_agent(run_dir: Path, out_dir: Path, first_pass: bool = False) -> dict[str, int]:
    """Write a run's final agent as a shipped one: V, M and C weights only (no optimiser state), the dream's
    start latents instead of every latent file, and a config whose agent files are the top-level ones.
    `first_pass`: the first M and C instead (those before any round of iterative training).

    OUT_DIR/provenance.json keeps the run's own config and its evaluations. Returns each file's size.
    """
    import json

    import numpy as np

    from worldmodels.agent import model_paths
    from worldmodels.config import agent_config, load_config, save_config, with_overrides
    from worldmodels.data.starts import STARTS_FILE, dream_starts
    from worldmodels.data.storage import encode_npz
    from worldmodels.utils import (
        atomic_write_bytes,
        atomic_write_text,
        load_checkpoint,
        save_checkpoint,
    )

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = load_config(run_dir / "config.json")
    m_path, c_path = model_paths(
        run_dir, with_overrides(cfg, {"iterate.rounds": 0}) if first_pass else cfg
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, src in (("vae", run_dir / "vae.pt"), ("mdnrnn", m_path)):
        header, blob = load_checkpoint(src, kind)
        if not header.get("finished"):
            raise WorldModelsError(f"{src}: training has not finished; nothing to export")
        save_checkpoint(out_dir / f"{kind}.pt", header, {"model": blob["model"]})
    header, blob = load_checkpoint(c_path, "controller")
    save_checkpoint(out_dir / "controller.pt", header, blob)
    mu, logvar = dream_starts(run_dir)
    starts = {"mu": mu.astype(np.float32), "logvar": logvar.astype(np.float32)}
    atomic_write_bytes(out_dir / STARTS_FILE, encode_npz(starts))
    agent = cfg if first_pass else agent_config(cfg)
    save_config(with_overrides(agent, {"iterate.rounds": 0}), out_dir / "config.json")
    evals = {}
    for name in ("eval.json", "eval_random.json", "eval_dream.json", "timings.json"):
        if (run_dir / name).exists():
            data = json.loads((run_dir / name).read_text())
            evals[name] = {k: v for k, v in data.items() if k not in ("returns", "lengths")}
    provenance = {"run_config": cfg.to_dict(), "mdnrnn": str(m_path.relative_to(run_dir)),
                  "controller": str(c_path.relative_to(run_dir)), "records": evals}  # fmt: skip
    atomic_write_text(out_dir / "provenance.json", json.dumps(provenance, indent=2) + "\n")
    return {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
