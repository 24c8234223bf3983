"""What V's and M's training share: the training skeleton (`Trainer`), resumable checkpoints, the NaN guard,
the position (epoch, batch) a run has reached, so a killed run continues with exactly the batches it had
left, and the graceful stop on SIGINT / SIGTERM that saves that position before the process ends."""

from __future__ import annotations

import hashlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from worldmodels.config import Config
from worldmodels.errors import WorldModelsError
from worldmodels.models.checkpoints import load_weights
from worldmodels.utils import Stopwatch, read_header, save_checkpoint


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
    """A training checkpoint: the model, and while training goes on the optimiser and the random stream
    it resumes from. A finished one keeps the model alone: nothing resumes it, and Adam's two moments
    would double its size (V: 17 MB of weights, 34 MB of optimiser state)."""
    header = {"kind": kind, "config": cfg.to_dict(), **asdict(pos), **(extra or {})}
    tensors: dict[str, Any] = {"model": model.state_dict()}
    if not pos.finished:
        tensors |= {"optimizer": optimizer.state_dict(), "generator": generator.get_state()}
    save_checkpoint(path, header, tensors)


def restore_generator(generator: torch.Generator, state: torch.Tensor, path: Path) -> None:
    """Set `generator` to a saved state. A state saved by a generator of another device type (a training
    stopped on a GPU and resumed on the CPU, or back) cannot be carried over: the generator is then seeded
    from the saved state's bytes (so a rerun resumes the same way) and a one-line note says so."""
    if len(state) == len(generator.get_state()):
        generator.set_state(state)
        return
    seed = int.from_bytes(hashlib.sha256(state.numpy().tobytes()).digest()[:8], "little") >> 1
    generator.manual_seed(seed)
    print(
        f"note: {path}: its random stream was saved on another device type than this run's "
        f"{generator.device.type}; training resumes with its weights and optimizer, and a stream seeded "
        "from the saved one",
        file=sys.stderr,
    )


def load_training(
    path: Path,
    kind: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator | None,
) -> tuple[dict[str, Any], Position]:
    """Restore a checkpoint into model (and optimizer, generator, unless it is finished: nothing trains
    on from a finished one); a mismatch names the file."""
    header = read_header(path, kind)
    blob = load_weights(path, kind, model)
    if header.get("finished"):
        optimizer = generator = None
    try:
        if optimizer is not None:
            optimizer.load_state_dict(blob["optimizer"])
        if generator is not None:
            restore_generator(generator, blob["generator"], path)
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


@dataclass
class Trainer:
    """The skeleton V's and M's training share, written once: the position a run has reached (resumed
    from the checkpoint), the learning rate's schedule by the update, validation every `val_every`
    updates (and at each epoch's end where asked) and at the end, a checkpoint every
    `checkpoint_every_s` and at a graceful stop, metrics and the progress bar. A stage gives it the
    batches of an epoch and one update; `run` trains from the position to `total` updates. Resuming
    gives the same weights as an uninterrupted run: the batches, the generator and the optimiser all
    continue from the saved position."""

    path: Path
    kind: str
    """The checkpoint's kind and the metrics' prefix: `vae` or `mdnrnn`."""
    name: str
    """How errors name the model: V or M."""
    cfg: Config
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    lr: float
    lr_final: float
    checkpoint_every_s: float
    grad_clip: float = 0.0
    """Clip gradients by value to [-grad_clip, grad_clip] (0: no clipping)."""
    extra: dict[str, Any] | None = None
    """More header fields for the checkpoint (M: its action size)."""

    def resume(self, check: Callable[[Path, Config], Any], init: Path | None = None) -> Position:
        """The position of an earlier, stopped training of this checkpoint (weights, optimiser and
        generator restored), or the start (from `init`'s weights, if given). `check` refuses a
        checkpoint of another shape in one line."""
        if self.path.exists():
            check(self.path, self.cfg)
            return load_training(self.path, self.kind, self.model, self.optimizer, self.generator)[
                1
            ]
        if init is not None:
            check(init, self.cfg)
            load_training(init, self.kind, self.model, None, None)
        return Position()

    def save(self, pos: Position) -> None:
        save_training(self.path, self.kind, self.cfg, pos, self.model, self.optimizer,
                      self.generator, self.extra)  # fmt: skip

    def run(
        self,
        pos: Position,
        total: int,
        epoch: Callable[[int, int], Iterable[Any]],
        update: Callable[[Any, int], tuple[torch.Tensor, dict[str, float], int]],
        metrics: Any,
        desc: str,
        progress: bool,
        rate: str,
        validate: Callable[[], dict[str, float]] | None = None,
        val_every: int = 0,
        validate_each_epoch: bool = False,
        finish: Callable[[], dict[str, float]] | None = None,
    ) -> dict[str, float]:
        """Train from `pos` to `total` updates and save the finished checkpoint. `epoch(e, skip)`: the
        batches of epoch e after the first `skip`; `update(batch, step)`: the loss (backpropagated here),
        its metrics and the items it trained on (counted into `perf/<rate>`); `finish()`: a last step on
        the trained model before the final validation (deterministic: after a stop it runs again from the
        same weights), its metrics logged. Returns the last update's metrics and the final validation's."""
        bar = tqdm(total=total, initial=pos.step, desc=desc, unit="upd", disable=not progress,
                   dynamic_ncols=True)  # fmt: skip
        clock, items, last = Stopwatch(), 0, {}
        checkpoint_due = Periodically(self.checkpoint_every_s)

        def log_validation() -> dict[str, float]:
            row = validate() if validate is not None else {}
            if row:
                metrics.log(pos.step, **row)
            return row

        stop = GracefulStop("update").start()
        try:
            while pos.step < total:
                for batch in epoch(pos.epoch, pos.batch):
                    loss, last, n = update(batch, pos.step)
                    check_finite(loss.item(), f"{self.name}'s loss", pos.step, self.path)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.grad_clip:
                        torch.nn.utils.clip_grad_value_(self.model.parameters(), self.grad_clip)
                    set_lr(self.optimizer, scheduled_lr(self.lr, self.lr_final, pos.step, total))
                    self.optimizer.step()
                    pos.step, pos.batch, items = pos.step + 1, pos.batch + 1, items + n
                    bar.update(1)
                    if pos.step % 10 == 0 or pos.step == total:
                        per_s = items / clock()
                        lr = self.optimizer.param_groups[0]["lr"]
                        metrics.log(
                            pos.step, **last, **{f"{self.kind}/lr": lr, f"perf/{rate}": per_s}
                        )
                        first = next(iter(last))
                        bar.set_postfix(
                            {first.split("/")[-1]: f"{last[first]:.3f}", rate: f"{per_s:.0f}"}
                        )
                    if val_every and pos.step % val_every == 0 and pos.step < total:
                        log_validation()
                    if pos.step >= total:
                        break
                    if checkpoint_due() or stop:
                        self.save(pos)
                        stop.check()
                else:
                    pos.epoch, pos.batch = pos.epoch + 1, 0
                    if validate_each_epoch:
                        log_validation()
        finally:
            stop.close()
            bar.close()
        if finish is not None:
            metrics.log(pos.step, **finish())
        final = log_validation()
        pos.finished = True
        self.model.to(memory_format=torch.contiguous_format)  # a checkpoint loads into any layout
        self.save(pos)
        return {**last, **final}
