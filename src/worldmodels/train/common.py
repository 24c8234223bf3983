"""What V's and M's training loops share: resumable checkpoints, the NaN guard, and the position
(epoch, batch) a run has reached, so a killed run continues with exactly the batches it had left, and the
graceful stop on SIGINT / SIGTERM that saves that position before the process ends."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from worldmodels.config import Config
from worldmodels.errors import WorldModelsError
from worldmodels.models.checkpoints import load_weights
from worldmodels.utils import read_header, save_checkpoint


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
    header = read_header(path, kind)
    blob = load_weights(path, kind, model)
    try:
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


class Periodically:
    """True once every `seconds` of wall time (for checkpoints)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last >= self.seconds:
            self.last = time.monotonic()
            return True
        return False


class Interrupted(KeyboardInterrupt):
    """A training loop stopped on a signal after saving its checkpoint; `signum` says which signal."""

    def __init__(self, signum: int, saved: bool = True) -> None:
        super().__init__(signum)
        self.signum, self.saved = signum, saved


class GracefulStop:
    """While a training loop runs: the first SIGINT or SIGTERM asks it to stop at the end of the current
    update (or generation), where it saves a checkpoint and raises `Interrupted`; a second one stops at
    once. Without it a kill loses everything since the last periodic checkpoint (up to
    `checkpoint_every_s`). Only the main thread can take signals; elsewhere this does nothing. A SIGINT
    the process inherited as ignored (started with `&` by a non-interactive shell) stays ignored."""

    def __init__(self, what: str) -> None:
        self.what, self.signum, self._old = what, 0, {}

    def start(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def close(self) -> None:
        """Put the handlers back as they were."""
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum:
            raise Interrupted(signum, saved=False)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this {self.what} and saving a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
        )

    def __bool__(self) -> bool:
        return bool(self.signum)

    def check(self) -> None:
        """Raise `Interrupted` if a stop was asked for: call it right after a checkpoint was written."""
        if self.signum:
            raise Interrupted(self.signum)
