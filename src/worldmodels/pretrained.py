"""The agents shipped inside the package (`--pretrained NAME`): a run directory's config and checkpoints."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from worldmodels.errors import WorldModelsError

ROOT = Path(__file__).parent / "pretrained"
FILES = ("config.json", "vae.pt", "mdnrnn.pt", "controller.pt", "latents_starts.npz")


def pretrained_dir(name: str) -> Path:
    path = ROOT / name
    if not (path / "controller.pt").exists():
        raise WorldModelsError(f"--pretrained {name}: no shipped agent of that name in {ROOT}")
    return path


def pretrained_command(
    command: str, args: argparse.Namespace, overrides: dict[str, Any], progress: bool
) -> int:
    """Copy the shipped agent into the run directory (default runs/pretrained-NAME), then evaluate/render."""
    from worldmodels import pipeline

    src = pretrained_dir(args.pretrained)
    run_dir = Path(args.run_dir or Path("runs") / f"pretrained-{args.pretrained}")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (src / name).exists() and not (run_dir / name).exists():
            shutil.copy2(src / name, run_dir / name)
    cfg = pipeline.resolve(run_dir, None, overrides)
    if command == "evaluate":
        from worldmodels.evaluate import evaluate_command

        return evaluate_command(run_dir, cfg, args.policy, args.where, progress)
    from worldmodels.render import render_run

    paths = render_run(run_dir, cfg)
    print(f"wrote {paths['real']} and {paths['dream']}")
    return 0
