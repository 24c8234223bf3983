"""What V's and M's training loops share: resumable checkpoints, the NaN guard, and the position
(epoch, batch) a run has reached, so a killed run continues with exactly the batches it had left."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from worldmodels.config import Config
from worldmodels.errors import WorldModelsError
from worldmodels.utils import load_checkpoint, save_checkpoint


@dataclass
class Position:
    step: int = 0
    """Updates done."""
    epoch: int = 0
    """Epoch in progress."""
    batch: int = 0
    """Batches of that epoch already trained on."""
    finished: bool = False


def save_training(
    path: Path,
    kind: str,
    cfg: Config,
    pos: Position,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    extra: dict[str, Any] | None = None,
) -> None:
    header = {"kind": kind, "config": cfg.to_dict(), **asdict(pos), **(extra or {})}
    tensors = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    save_checkpoint(path, header, tensors)


def load_training(
    path: Path,
    kind: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None,
) -> tuple[dict[str, Any], Position]:
    """Restore a checkpoint into model (and optimizer, generator); a mismatch names the file."""
    header, blob = load_checkpoint(path, kind)
    try:
        model.load_state_dict(blob["model"])
        if optimizer is not None:
            optimizer.load_state_dict(blob["optimizer"])
        if generator is not None:
            generator.set_state(blob["generator"])
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise WorldModelsError(f"{path}: does not match this run's {kind} ({first})") from None
    pos = Position(**{k: header[k] for k in ("step", "epoch", "batch", "finished")})
    return header, pos


def scheduled_lr(base: float, final: float, step: int, total: int) -> float:
    """The learning rate of update `step` of `total`: cosine from `base` down to `final` (0: constant base).
    A function of the step alone, so a resumed training continues the same schedule."""
    if not final or total <= 0:
        return base
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * min(step, total) / total))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(value: float, what: str, step: int, path: Path) -> None:
    if not math.isfinite(value):
        raise WorldModelsError(
            f"{what} became {value} at update {step}; stopped, {path} keeps the last good state "
            "(try a lower learning rate)"
        )


class Every:
    """True once every `seconds` of wall time (for checkpoints)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last >= self.seconds:
            self.last = time.monotonic()
            return True
        return False
