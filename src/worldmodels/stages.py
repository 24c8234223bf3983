"""The pipeline's stages, each declared once: what it is, which settings its outputs depend on, what it
writes, how to tell it is done and which function runs it.

`worldmodels run` runs them in this order; `--force STAGE` removes the outputs of STAGE and every later
one; a changed setting is refused where a stage that wrote output depends on it; the report orders its
timings by this list; `--help` takes each stage's text from here. Adding a stage is one `Stage` below plus
its function. Functions are named as "module:function" and imported only when called, so this module
imports no stage's code.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worldmodels import rundir
from worldmodels.config import Config
from worldmodels.errors import WorldModelsError


def _function(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    """One line for `worldmodels --help`."""
    fields: tuple[str, ...]
    """Config fields this stage's own outputs depend on (a trailing dot: the whole section). A stage also
    depends on every earlier stage's fields, through its inputs."""
    outputs: tuple[str, ...]
    """What it writes, relative to the run directory (removed by --force)."""
    run: str
    """"module:function", called as function(run_dir, cfg, progress)."""
    done: str | None = None
    """"module:function", called as function(run_dir, cfg) -> bool; None: every output exists."""
    resumable: tuple[str, ...] = ()
    """Own fields that may change while the stage is unfinished (a resume extends it)."""

    def is_done(self, run_dir: Path, cfg: Config) -> bool:
        if self.done is None:
            return all((Path(run_dir) / p).exists() for p in self.outputs)
        return bool(_function(self.done)(Path(run_dir), cfg))

    def started(self, run_dir: Path) -> bool:
        """Whether it has written anything (a finished stage that wrote nothing depends on nothing); an
        empty folder, or one holding only a killed writer's temporaries, is nothing."""
        for name in self.outputs:
            p = Path(run_dir) / name
            if p.is_dir():
                if any(not rundir.is_temporary(f) for f in p.iterdir()):
                    return True
            elif p.exists():
                return True
        return False

    def execute(self, run_dir: Path, cfg: Config, progress: bool = True) -> Any:
        return _function(self.run)(Path(run_dir), cfg, progress)

    def remove_outputs(self, run_dir: Path) -> None:
        for name in self.outputs:
            p = Path(run_dir) / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


STAGES: list[Stage] = [
    Stage(
        "collect",
        "Collect random-policy episodes into RUN_DIR/episodes (resumable).",
        fields=("seed", "env.", "collect."),
        outputs=(rundir.EPISODES,),
        run="worldmodels.data.collect:collect",
        done="worldmodels.data.collect:collect_done",
        resumable=("collect.episodes",),
    ),
    Stage(
        "train-vae",
        "Train V, the ConvVAE, on frames streamed from the run's episodes (resumable).",
        fields=("vae.", "val_fraction"),
        outputs=(rundir.VAE, rundir.RECONSTRUCTIONS),
        run="worldmodels.train.vae:train_vae",
        done="worldmodels.train.vae:vae_done",
    ),
    Stage(
        "encode",
        "Store each frame's (mu, logvar) under V into RUN_DIR/latents (resumable).",
        fields=(),
        outputs=(rundir.LATENTS,),
        run="worldmodels.train.vae:encode_latents",
        done="worldmodels.train.vae:encode_done",
    ),
    Stage(
        "train-mdnrnn",
        "Train M, the MDN-RNN, on z resampled from the latents (resumable).",
        fields=("mdnrnn.",),
        outputs=(rundir.MDNRNN, rundir.MIXTURE_USAGE),
        run="worldmodels.train.mdnrnn:train_mdnrnn",
        done="worldmodels.train.mdnrnn:mdnrnn_done",
    ),
    Stage(
        "train-controller",
        "Train C with CMA-ES in M's dream or in the real env (resumable).",
        fields=("controller.",),
        outputs=(rundir.CONTROLLER, rundir.ES_STATE),
        run="worldmodels.train.controller:train_controller",
        done="worldmodels.train.controller:controller_done",
        resumable=("controller.generations",),
    ),
    Stage(
        "iterate",
        "Iterative training: collect with C, train M further, train C again, for iterate.rounds.",
        fields=("iterate.",),
        outputs=(rundir.ROUNDS,),
        run="worldmodels.train.iterate:iterate",
        done="worldmodels.train.iterate:iterate_done",  # growing iterate.rounds: see pipeline.resolve
        resumable=("iterate.rounds", "iterate.choose"),  # a round does not depend on either
    ),
    Stage(
        "evaluate",
        "Score the controller (or the random policy) over N episodes; writes eval.json.",
        fields=(),  # a measurement: changing its settings re-measures, invalidates nothing
        outputs=tuple(rundir.EVALUATIONS.values()),
        run="worldmodels.evaluate:evaluate_run",
        done="worldmodels.evaluate:evaluate_done",
    ),
    Stage(
        "render",
        "GIFs: a real episode beside its reconstruction, and a dream decoded by V.",
        fields=(),
        outputs=(rundir.REAL_GIF, rundir.DREAM_GIF),
        run="worldmodels.render:render_run",
    ),
    Stage(
        "report",
        "Build RUN_DIR/report.html from the run directory alone.",
        fields=(),
        outputs=(rundir.REPORT,),
        run="worldmodels.report:build_report",
        done="worldmodels.report:report_done",
    ),
]

NAMES = [s.name for s in STAGES]


def get(name: str) -> Stage:
    """The stage of that name, or a one-line error listing them."""
    for s in STAGES:
        if s.name == name:
            return s
    raise WorldModelsError(f"--force {name}: unknown stage; choose one of: {', '.join(NAMES)}")


def depends_on(stage: Stage) -> list[str]:
    """Every field the stage's outputs depend on: its own and every earlier stage's."""
    out: list[str] = []
    for s in STAGES[: STAGES.index(stage) + 1]:
        out += s.fields
    return out
