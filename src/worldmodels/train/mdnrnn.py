"""Train M on z resampled every batch from the stored (mu, logvar), sequences streamed from disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worldmodels.config import Config
from worldmodels.data.datasets import SequenceStream, split
from worldmodels.data.storage import list_episodes, load_npz
from worldmodels.errors import WorldModelsError
from worldmodels.models import MDNRNN, MDNRNNEnsemble, build_mdnrnn
from worldmodels.models.checkpoints import check_mdnrnn_header
from worldmodels.models.mdnrnn import DropoutMasks, MDNOutput, mdn_nll, sample_mixture
from worldmodels.models.vae import sample_z
from worldmodels.rundir import RunDir
from worldmodels.train.common import Trainer
from worldmodels.utils import (
    STREAM_MDN,
    Metrics,
    atomic_write_text,
    autocast,
    checkpoint_finished,
    resolve_device,
    seed_for,
)


def latent_files(run_dir: Path, cfg: Config) -> list[Path]:
    paths = list_episodes(RunDir(run_dir).latents)
    if not paths:
        raise WorldModelsError(
            f"{Path(run_dir) / 'latents'}: no latents; run `worldmodels encode` first"
        )
    z = load_npz(paths[0], ("mu",), what="latent")["mu"].shape[1]
    if z != cfg.vae.z_dim:
        raise WorldModelsError(
            f"{paths[0]}: latents have z size {z}, but vae.z_dim is {cfg.vae.z_dim}; rerun encode"
        )
    return paths


def action_dim_of(paths: list[Path]) -> int:
    return int(load_npz(paths[0], ("action",), what="latent")["action"].shape[1])


NAMES = {"nll": "nll", "done": "done_loss", "reward": "reward_loss", "loss": "loss"}


def mdnrnn_losses(
    model: MDNRNN,
    batch: dict[str, torch.Tensor],
    cfg: Config,
    generator: torch.Generator | None,
    amp: bool,
) -> tuple[dict[str, torch.Tensor], MDNOutput]:
    """The paper's losses on one padded batch; padding contributes to none of them.

    nll: -log p(z_{t+1} | z_<=t, a_<=t) under the per-dimension mixture, mean over dims and real steps.
    done: sigmoid cross-entropy against `terminated` (positives weighted); reward: squared error, where
    it over-predicts weighted by `mdnrnn.reward_over_weight`.
    """
    z = sample_z(batch["mu"], batch["logvar"], generator)  # resampled every batch, as the paper
    rate = model.dropout if model.training else 0.0
    # one mask per sequence (mdnrnn.dropout), from the training's own stream
    masks = model.masks(len(z), rate, generator)
    inputs = z[:, :-1]
    if model.training and cfg.mdnrnn.self_feed > 0:
        inputs = self_fed(model, z, batch["action"], cfg.mdnrnn.self_feed, generator, amp, masks)
    with autocast(z.device, amp):
        out, _ = model(inputs, batch["action"], masks=masks)
    next_mask, mask = batch["next_mask"].float(), batch["mask"].float()
    nll = mdn_nll(out.logpi, out.mu, out.logsigma, z[:, 1:]).mean(-1)
    losses = {"nll": (nll * next_mask).sum() / next_mask.sum().clamp(min=1)}
    total = losses["nll"]
    if out.done_logit is not None:
        pos_weight = torch.tensor(cfg.mdnrnn.done_pos_weight, device=z.device)
        bce = F.binary_cross_entropy_with_logits(
            out.done_logit, batch["terminated"], pos_weight=pos_weight, reduction="none"
        )
        losses["done"] = (bce * mask).sum() / mask.sum().clamp(min=1)
        total = total + losses["done"]
    if out.reward is not None:
        err = out.reward - batch["reward"]
        over = torch.where(err > 0, cfg.mdnrnn.reward_over_weight, 1.0)  # optimism can cost more
        losses["reward"] = (over * err**2 * mask).sum() / mask.sum().clamp(min=1)
        total = total + losses["reward"]
    losses["loss"] = total
    return losses, out


def self_fed(
    model: MDNRNN,
    z: torch.Tensor,
    action: torch.Tensor,
    share: float,
    generator: torch.Generator | None,
    amp: bool,
    masks: DropoutMasks | None = None,
) -> torch.Tensor:
    """M's inputs z_0..z_{T-2} (B, T-1, Z) with each step t >= 1 replaced, with probability `share`, by
    M's own sample of z_t at tau 1, drawn from a pass over the real z without gradient (mdnrnn.self_feed).
    Step 0 stays the real first frame, as in the dream."""
    real = z[:, :-1]
    with torch.no_grad(), autocast(z.device, amp):
        first, _ = model(real, action, masks=masks)
    own = sample_mixture(first.logpi, first.mu, first.logsigma, 1.0, generator)  # of z_1..z_{T-1}
    own = torch.cat([real[:, :1], own[:, :-1].to(real.dtype)], dim=1)
    pick = torch.rand(real.shape[:2], generator=generator, device=z.device) < share
    pick[:, 0] = False
    return torch.where(pick[..., None], own, real)


def training_losses(
    model: MDNRNN | MDNRNNEnsemble,
    batch: dict[str, torch.Tensor],
    cfg: Config,
    generator: torch.Generator | None,
    amp: bool,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(losses to log, the loss to minimise). One M: its losses. An ensemble: each member's losses with
    its own bootstrap weight on every sequence (Poisson(1), drawn per batch: an online bootstrap of the
    episodes) and its own z draws; logged as the members' mean, minimised as their sum (members share
    no weights, so each gets exactly its own gradient)."""
    if not isinstance(model, MDNRNNEnsemble):
        losses, _ = mdnrnn_losses(model, batch, cfg, generator, amp)
        return losses, losses["loss"]
    mean: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=batch["mu"].device)
    B = batch["mu"].shape[0]
    for member in model.members:
        w = torch.poisson(torch.ones(B, device=batch["mu"].device), generator=generator)
        weighted = {**batch, "mask": batch["mask"].float() * w[:, None],
                    "next_mask": batch["next_mask"].float() * w[:, None]}  # fmt: skip
        losses, _ = mdnrnn_losses(member, weighted, cfg, generator, amp)
        total = total + losses["loss"]
        for k, v in losses.items():
            mean[k] = mean.get(k, 0.0) + v.detach() / len(model.members)
    return mean, total


def to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


@torch.no_grad()
def validate(
    model: MDNRNN, stream: SequenceStream, cfg: Config, device: torch.device
) -> tuple[dict[str, float], np.ndarray]:
    """Validation NLL, done-head accuracy, the reward head's error (per step, and the predicted against the
    real return of each held-out sequence: correlation and mean bias) and mixture usage (mean weight per
    dimension and component, (Z, K)) over the held-out episodes, with fixed z draws."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, STREAM_MDN, 99))
    sums: dict[str, float] = {}
    n_steps = n_next = 0
    weights = torch.zeros(cfg.vae.z_dim, cfg.mdnrnn.n_mixtures)
    tp = fn = fp = tn = 0
    # the done probability summed with the loss weight undone (calibrate_done's reading)
    p_cal = 0.0
    shift = math.log(cfg.mdnrnn.done_pos_weight)
    abs_err, pred_sums, real_sums = 0.0, [], []
    for raw in stream.epoch(0):
        b = to_tensors(raw, device)
        losses, out = mdnrnn_losses(model, b, cfg, gen, cfg.mdnrnn.amp)
        m, nm = b["mask"], b["next_mask"]
        k_steps, k_next = int(m.sum()), int(nm.sum())
        for key, val in losses.items():
            sums[key] = sums.get(key, 0.0) + float(val) * (k_next if key == "nll" else k_steps)
        n_steps, n_next = n_steps + k_steps, n_next + k_next
        weights += out.logpi.exp()[nm].sum(0).cpu()
        # the reward head: per step, and summed over each sequence (a whole episode when it fits)
        if out.reward is not None:
            pred_r = out.reward.float() * m
            abs_err += float(((pred_r - b["reward"] * m).abs()).sum())
            pred_sums += pred_r.sum(1).tolist()
            real_sums += (b["reward"] * m).sum(1).tolist()
        if out.done_logit is not None:
            pred, true = (out.done_logit > 0)[m], b["terminated"][m] > 0.5
            tp, fn = tp + int((pred & true).sum()), fn + int((~pred & true).sum())
            fp, tn = fp + int((pred & ~true).sum()), tn + int((~pred & ~true).sum())
            p_cal += float(torch.sigmoid(out.done_logit.float() - shift)[m].sum())
    model.train()
    res = {
        f"mdnrnn/val_{NAMES[k]}": v / max(1, n_next if k == "nll" else n_steps)
        for k, v in sums.items()
    }
    if model.reward_head and pred_sums:
        p, r = np.asarray(pred_sums), np.asarray(real_sums)
        res["mdnrnn/val_reward_mae"] = abs_err / max(1, n_steps)
        res["mdnrnn/val_return_bias"] = float((p - r).mean())
        res["mdnrnn/val_return_corr"] = (
            float(np.corrcoef(p, r)[0, 1]) if len(p) > 1 and p.std() > 0 and r.std() > 0 else 0.0
        )
    if model.done_head:
        res["mdnrnn/val_done_recall"] = tp / max(1, tp + fn)
        res["mdnrnn/val_done_false_alarm"] = fp / max(1, fp + tn)
        # calibrated, the mean probability equals the rate of deaths per step (teacher-forced on real data)
        res["mdnrnn/val_done_rate"] = (tp + fn) / max(1, n_steps)
        res["mdnrnn/val_done_p_calibrated"] = p_cal / max(1, n_steps)
    usage = (weights / max(1, n_next)).numpy()
    ranked = -np.sort(-usage, axis=1).mean(
        0
    )  # mean weight of each dimension's most-used, 2nd, ... component
    for k, w in enumerate(ranked):
        res[f"mdnrnn/mix_rank{k}"] = float(w)
    return res, usage


def done_row(model: MDNRNN) -> int:
    """Which output of M's head is the done logit (the one before the reward's, if any)."""
    return model.head.out_features - 1 - int(model.reward_head)


def refit_done_head(
    model: MDNRNN,
    stream: SequenceStream,
    val_stream: SequenceStream,
    cfg: Config,
    device: torch.device,
) -> dict[str, float]:
    """`mdnrnn.done_refit_epochs`: the done row of M's head fitted again, from zero, on M's frozen memory h
    (teacher-forced on the training episodes, z drawn from their (mu, logvar)), with the done loss's
    weight, by Adam at M's learning rate; kept at its best held-out done loss, and only where that beats
    the jointly trained row's. Deterministic (its own random streams), so a resumed stage gets the same."""
    m = cfg.mdnrnn
    i = done_row(model)
    pos_weight = torch.tensor(m.done_pos_weight, device=device)

    @torch.no_grad()
    def memory(raw: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = to_tensors(raw, device)
        z = sample_z(b["mu"], b["logvar"], gen)
        with autocast(device, m.amp):
            h, _ = model.lstm(torch.cat([z[:, :-1], b["action"]], dim=-1))
        return h.float(), b["terminated"], b["mask"].float()

    def loss_of(w: torch.Tensor, bias: torch.Tensor, h, y, mask) -> tuple[torch.Tensor, float]:
        bce = F.binary_cross_entropy_with_logits(h @ w + bias, y, pos_weight=pos_weight,
                                                 reduction="none")  # fmt: skip
        return (bce * mask).sum() / mask.sum().clamp(min=1), float(mask.sum())

    def held_out(w: torch.Tensor, bias: torch.Tensor) -> float:
        gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, STREAM_MDN, 97))
        total = n = 0.0
        with torch.no_grad():
            for raw in val_stream.epoch(0):
                loss, k = loss_of(w, bias, *memory(raw, gen))
                total, n = total + float(loss) * k, n + k
        return total / max(n, 1.0)

    was_training = model.training
    model.eval()
    head_w, head_b = model.head.weight[i].detach().clone(), model.head.bias[i].detach().clone()
    joint = best = held_out(head_w, head_b)
    best_w, best_b, kept, since = head_w, head_b, 0, 0
    w = torch.zeros_like(head_w, requires_grad=True)
    bias = torch.zeros_like(head_b, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=m.lr)
    gen = torch.Generator(device=device).manual_seed(seed_for(cfg.seed, STREAM_MDN, 98))
    for epoch in range(m.done_refit_epochs):
        for raw in stream.epoch(1000 + epoch):  # an order of its own, not M's epochs'
            loss, _ = loss_of(w, bias, *memory(raw, gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        now = held_out(w.detach(), bias.detach())
        if now < best:
            best, best_w, best_b, kept, since = (
                now,
                w.detach().clone(),
                bias.detach().clone(),
                epoch + 1,
                0,
            )
        else:
            since += 1
            if since >= 2:
                break
    with torch.no_grad():
        model.head.weight[i] = best_w
        model.head.bias[i] = best_b
    model.train(was_training)
    return {
        "mdnrnn/done_refit_joint_val_loss": joint,
        "mdnrnn/done_refit_val_loss": best,
        "mdnrnn/done_refit_epochs_kept": float(kept),  # 0: the joint head was kept
    }


def mdnrnn_done(run_dir: Path, cfg: Config) -> bool:
    return checkpoint_finished(RunDir(run_dir).round(0).mdnrnn, "mdnrnn")


def train_mdnrnn(
    run_dir: Path,
    cfg: Config,
    progress: bool = True,
    r: int = 0,
) -> dict[str, float]:
    """Train round r's M on every latent file of the run, z resampled from (mu, logvar) in every batch,
    resumable: round 0 from a fresh initialisation (`train-mdnrnn`), round r >= 1 (iterative training)
    from round r - 1's weights."""
    run_dir = Path(run_dir)
    run, m = RunDir(run_dir), cfg.mdnrnn
    this = run.round(r)
    device = resolve_device(cfg.device)
    paths = latent_files(run_dir, cfg)
    action_dim = action_dim_of(paths)
    torch.manual_seed(seed_for(cfg.seed, STREAM_MDN))
    model = build_mdnrnn(cfg, action_dim).to(device)
    trainer = Trainer(
        this.mdnrnn, "mdnrnn", "M", cfg, model, torch.optim.Adam(model.parameters(), lr=m.lr),
        torch.Generator(device=device).manual_seed(seed_for(cfg.seed, STREAM_MDN, 1)),
        m.lr, m.lr_final, m.checkpoint_every_s, m.grad_clip, {"action_dim": action_dim},
    )  # fmt: skip
    pos = trainer.resume(check_mdnrnn_header, run.round(r - 1).mdnrnn if r > 0 else None)
    if pos.finished:
        return {"mdnrnn/step": pos.step}
    train_paths, val_paths = split(paths, cfg.seed, cfg.val_fraction)
    stream = SequenceStream(
        train_paths, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed, STREAM_MDN
    )
    val_stream = SequenceStream(
        val_paths, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed, STREAM_MDN
    )
    total = sum(stream.batches_in_epoch(e) for e in range(m.epochs))
    total = min(total, m.max_updates) if m.max_updates else total

    def update(raw: dict, step: int) -> tuple[torch.Tensor, dict[str, float], int]:
        losses, loss = training_losses(
            model, to_tensors(raw, device), cfg, trainer.generator, m.amp
        )
        return (
            loss,
            {f"mdnrnn/{NAMES[k]}": v.item() for k, v in losses.items()},
            int(raw["mask"].sum()),
        )

    def validation() -> dict[str, float]:
        if not val_paths:
            return {}
        val, usage = validate(getattr(model, "primary", model), val_stream, cfg, device)
        atomic_write_text(
            run.mixture_usage, json.dumps({"step": pos.step, "usage": usage.tolist()})
        )
        return val

    stage = this.stage("train-mdnrnn")
    metrics = Metrics(run_dir, stage, cfg.tensorboard)
    last = trainer.run(
        pos, total, lambda e, skip: stream.epoch(e, skip=skip), update, metrics, stage, progress,
        "steps_per_s", validation, val_every=max(1, total // 20),
        finish=(lambda: refit_done_head(model, stream, val_stream, cfg, device))
        if m.done_refit_epochs and val_paths else None,
    )  # fmt: skip
    metrics.close()
    return {"mdnrnn/step": pos.step, **last}
