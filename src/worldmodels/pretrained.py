"""The agents shipped inside the package (`--pretrained NAME`): a run directory's config and checkpoints."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

from worldmodels import rundir
from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir

ROOT = Path(__file__).parent / "pretrained"


def shipped_names() -> list[str]:
    """The agents shipped inside the package."""
    return sorted(p.name for p in ROOT.iterdir() if (p / rundir.CONTROLLER).exists())


def pretrained_dir(name: str) -> Path:
    """A shipped agent's folder by NAME, or an exported agent's folder given as a path."""
    path = ROOT / name
    if (path / rundir.CONTROLLER).exists():
        return path
    path = Path(name)
    if path.is_dir() and all(
        (path / f).exists() for f in (rundir.CONFIG, rundir.VAE, rundir.MDNRNN)
    ):
        return path
    shipped = shipped_names()
    raise WorldModelsError(
        f"--pretrained {name}: neither a shipped agent ({', '.join(shipped)}) nor a folder written by "
        "`worldmodels export`"
    )


def default_run_dir(name: str) -> Path:
    """Where a --pretrained command works without --run-dir: runs/pretrained-NAME."""
    return Path("runs") / f"pretrained-{Path(name).name}"


def copy_agent(src: Path, run_dir: Path, name: str, controller: bool = True) -> None:
    """Copy an agent's files (shipped or exported, `src`) into a run directory, once: a run directory that
    holds another agent's V or M is refused, and without `controller` (a new C is to be trained there)
    so is one that holds the agent's own C."""
    run = RunDir(run_dir)
    for path in (
        run.vae,
        run.round(0).mdnrnn,
    ):  # a run directory that holds another agent is not reused
        if path.exists() and not filecmp.cmp(src / path.name, path, shallow=False):
            raise WorldModelsError(
                f"--run-dir {run_dir}: holds another agent than --pretrained {name} ({path.name} "
                "differs); use another --run-dir"
            )
    own = run.round(0).controller
    if not controller and own.exists() and (src / rundir.CONTROLLER).exists():
        if filecmp.cmp(src / rundir.CONTROLLER, own, shallow=False):
            raise WorldModelsError(
                f"--run-dir {run_dir}: holds {name}'s own C; train a new one in another --run-dir"
            )
    wanted = [f for f in rundir.AGENT_FILES if controller or f != rundir.CONTROLLER]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for f in wanted:
            if (src / f).exists() and not (run_dir / f).exists():
                shutil.copy2(src / f, run_dir / f)
    except OSError as e:
        raise WorldModelsError(f"--run-dir {run_dir}: cannot write there ({e.strerror})") from None


def export_agent(run_dir: Path, out_dir: Path, first_pass: bool = False) -> dict[str, int]:
    """Write a run's final agent as a shipped one: V, M and C weights only (no optimiser state), the dream's
    start latents instead of every latent file, and a config whose agent files are the top-level ones.
    `first_pass`: the first M and C instead (those before any round of iterative training).

    OUT_DIR/provenance.json keeps the run's own config and its evaluations. Returns each file's size.
    """
    import json

    import numpy as np

    from worldmodels.config import load_config, round_config, save_config, with_overrides
    from worldmodels.data.starts import dream_starts
    from worldmodels.data.storage import encode_npz
    from worldmodels.utils import (
        atomic_write_bytes,
        atomic_write_text,
        load_checkpoint,
        save_checkpoint,
    )

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run, out = RunDir(run_dir), RunDir(out_dir)
    cfg = load_config(run.config)
    agent = run.round(0) if first_pass else run.agent_round(cfg)
    m_path, c_path = agent.mdnrnn, agent.controller
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, src in (("vae", run.vae), ("mdnrnn", m_path)):
        header, blob = load_checkpoint(src, kind)
        if not header.get("finished"):
            raise WorldModelsError(f"{src}: training has not finished; nothing to export")
        save_checkpoint(out_dir / src.name, header, {"model": blob["model"]})
    header, blob = load_checkpoint(c_path, "controller")
    save_checkpoint(out.round(0).controller, header, blob)
    mu, logvar = dream_starts(run_dir)
    starts = {"mu": mu.astype(np.float32), "logvar": logvar.astype(np.float32)}
    atomic_write_bytes(out.shipped_starts, encode_npz(starts))
    own = cfg if first_pass else round_config(cfg, agent.index)
    save_config(with_overrides(own, {"iterate.rounds": 0}), out.config)
    evals = {}
    for path in (*(run / f for f in rundir.EVALUATIONS.values()), run.timings):
        if path.exists():
            data = json.loads(path.read_text())
            evals[path.name] = {k: v for k, v in data.items() if k not in ("returns", "lengths")}
    provenance = {"run_config": cfg.to_dict(), "mdnrnn": run.relative(m_path),
                  "controller": run.relative(c_path), "records": evals}  # fmt: skip
    atomic_write_text(out_dir / "provenance.json", json.dumps(provenance, indent=2) + "\n")
    return {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
