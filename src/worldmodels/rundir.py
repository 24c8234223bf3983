"""The run directory as one object: every path a run writes, its rounds, and which round is the agent.

No other module spells a run's file names. Round 0 is a round like the others: the first M and C (the run's
top level, where `train-mdnrnn` and `train-controller` write them) with their records under rounds/0;
round r >= 1 keeps everything under rounds/r. A run directory written before this module existed has the
same layout, so every old run (and every shipped or exported agent) loads unchanged.

Torch-free: the CLI reads runs before it imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worldmodels.errors import WorldModelsError

if TYPE_CHECKING:
    from worldmodels.config import Config

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TIMINGS = "timings.json"
EPISODES = "episodes"
LATENTS = "latents"
VAE = "vae.pt"
RECONSTRUCTIONS = "reconstructions.png"
MDNRNN = "mdnrnn.pt"
MIXTURE_USAGE = "mixture_usage.json"
CONTROLLER = "controller.pt"
ES_STATE = "es_state.pkl"
ROUNDS = "rounds"
CHOSEN = "rounds/chosen.json"
SEARCHES = "searches"
SHIPPED_STARTS = "latents_starts.npz"
"""A shipped or exported agent's dream starts, in place of RUN_DIR/latents."""
REAL_GIF = "real.gif"
DREAM_GIF = "dream.gif"
REPORT = "report.html"
EVALUATIONS = {("controller", "real"): "eval.json", ("random", "real"): "eval_random.json",
               ("controller", "dream"): "eval_dream.json"}  # fmt: skip
"""The evaluate stage's files, by (policy, where)."""
AGENT_FILES = (CONFIG, VAE, MDNRNN, CONTROLLER, SHIPPED_STARTS)
"""What a shipped or exported agent's folder holds (a run directory's own agent files, at its top level)."""


def is_temporary(path: Path) -> bool:
    """A file an atomic write was making (.NAME.XXXX.tmp, utils.atomic_write_bytes): never read, removed
    when found stale."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporaries killed writers left in `folder` (they are never read). Only the folder's one
    writer may call it: another writer's temporary is live."""
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Round:
    """Round r of a run: its M and C, where CMA-ES keeps its state, and its records (the real episodes
    that scored its C, what its C's predecessor scored while collecting, whether it is done). With
    `search` j: one of several C searches of the round (iterate.searches, final_searches), whose C, CMA-ES state
    and real check live in rounds/r/searches/j; its M is the round's."""

    run: RunDir
    index: int
    search: int | None = None

    def searching(self, j: int) -> Round:
        """Search j of this round's C (iterate.searches, final_searches)."""
        return Round(self.run, self.index, j)

    @property
    def models(self) -> Path:
        """The folder of this round's M and C: the run's top level for round 0, rounds/r otherwise
        (a search's C: rounds/r/searches/j)."""
        return self.run.root if self.index == 0 and self.search is None else self.records

    @property
    def records(self) -> Path:
        """rounds/r: this round's evaluation and notes (round 0's too); rounds/r/searches/j a search's."""
        return self._folder if self.search is None else self.searches_folder / str(self.search)

    @property
    def _folder(self) -> Path:
        return self.run.root / ROUNDS / str(self.index)

    @property
    def searches(self) -> Path:
        """rounds/r/searches.json: each search's real score and the one that became the round's C."""
        return self._folder / f"{SEARCHES}.json"

    @property
    def searches_folder(self) -> Path:
        """rounds/r/searches: the folders of the round's C searches, one per search."""
        return self._folder / SEARCHES

    @property
    def mdnrnn(self) -> Path:
        """The round's M (a search's too: the searches differ in C only)."""
        return Round(self.run, self.index).models / MDNRNN

    @property
    def controller(self) -> Path:
        return self.models / CONTROLLER

    @property
    def es_state(self) -> Path:
        return self.models / ES_STATE

    @property
    def eval(self) -> Path:
        """The real episodes that scored this round's C (iterate.eval_episodes)."""
        return self.records / "eval.json"

    @property
    def collect_record(self) -> Path:
        """What the previous round's C scored while collecting this round's episodes."""
        return self.records / "collect.json"

    @property
    def done_marker(self) -> Path:
        return self.records / "done"

    def is_done(self) -> bool:
        """Round 0 is done once its C has trained; round r once its marker is written."""
        return self.controller.exists() if self.index == 0 else self.done_marker.exists()

    def stage(self, name: str) -> str:
        """The metrics' stage name of this round's `name` (train-mdnrnn, train-controller): the plain name
        for round 0, `iterate-R/NAME` for round R; `iterate-R/NAME/search-J` for a search."""
        name = name if self.index == 0 else f"iterate-{self.index}/{name}"
        return name if self.search is None else f"{name}/search-{self.search}"


@dataclass(frozen=True)
class RunDir:
    """A run directory: `RunDir(path).vae`, `.round(r).controller`, `.agent_round(cfg)`, ..."""

    root: Path

    def __init__(self, root: Path | str) -> None:
        object.__setattr__(self, "root", Path(root))

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    # the files of the stages before iterative training
    config = property(lambda self: self.root / CONFIG)
    metrics = property(lambda self: self.root / METRICS)
    timings = property(lambda self: self.root / TIMINGS)
    episodes = property(lambda self: self.root / EPISODES)
    latents = property(lambda self: self.root / LATENTS)
    vae = property(lambda self: self.root / VAE)
    reconstructions = property(lambda self: self.root / RECONSTRUCTIONS)
    mixture_usage = property(lambda self: self.root / MIXTURE_USAGE)
    shipped_starts = property(lambda self: self.root / SHIPPED_STARTS)
    rounds = property(lambda self: self.root / ROUNDS)
    chosen = property(lambda self: self.root / CHOSEN)
    real_gif = property(lambda self: self.root / REAL_GIF)
    dream_gif = property(lambda self: self.root / DREAM_GIF)
    report = property(lambda self: self.root / REPORT)

    def evaluation(self, policy: str = "controller", where: str = "real") -> Path:
        """eval.json (the controller in the real env), eval_random.json, eval_dream.json."""
        return self.root / EVALUATIONS[(policy, where)]

    def round(self, r: int) -> Round:
        return Round(self, r)

    def chosen_round(self, cfg: Config) -> int | None:
        """The round `iterate.choose best` made the agent, or None: not chosen yet, or chosen among fewer
        rounds than the config has now."""
        if not self.chosen.exists():
            return None
        record = json.loads(self.chosen.read_text())
        return int(record["round"]) if record["rounds"] == cfg.iterate.rounds else None

    def agent_round(self, cfg: Config) -> Round:
        """The round whose M and C are the run's agent: the last one (the paper), the one chosen by
        `iterate.choose best` (rounds/chosen.json), or round 0 without iterative training. A one-line
        error while iterative training has not finished."""
        rounds = cfg.iterate.rounds
        if rounds == 0:
            return self.round(0)
        r = self.chosen_round(cfg) if cfg.iterate.choose == "best" else rounds
        if r is None or not self.round(rounds).is_done():
            raise WorldModelsError(
                f"{self.root}: iterative training has not finished its {rounds} round(s); "
                "run `worldmodels iterate`"
            )
        return self.round(r)

    def agent(self, cfg: Config) -> tuple[Path, Path]:
        """(M, C) of the run's agent (see agent_round)."""
        r = self.agent_round(cfg)
        return r.mdnrnn, r.controller

    def remove_stale_temporaries(self) -> None:
        """remove_stale_temporaries at the run's top level and in rounds/R, as the run's one writer (the
        lock's holder). The episode and latent folders are swept by the stages that fill them."""
        searches = self.rounds.glob(f"*/{SEARCHES}/*")  # Round.searches_folder's
        for folder in [self.root, *(p for p in [*self.rounds.glob("*"), *searches] if p.is_dir())]:
            remove_stale_temporaries(folder)

    def relative(self, path: Path) -> str:
        """A path inside the run, as the run's records name it."""
        return str(Path(path).relative_to(self.root))
