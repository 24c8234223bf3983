"""Issue 34's done-head row without training M again: copy a run whose M is trained (and done_refit off),
fit M's done head again on M's frozen memory exactly as `mdnrnn.done_refit_epochs` does at the end of M's
training, and leave the copy ready for `worldmodels run` to train and score C in that M's dream.

    python -m experiments.done_refit_row --run-dir FROM --out TO [--epochs 10]
    worldmodels run --run-dir TO --quiet

The copy's M is the M a run from scratch with `--mdnrnn.done_refit_epochs N` gives (the refit is the last
step of M's training and deterministic), and its config says so. Episodes and latents are hard links; V is
copied; C and everything after M are left out, so `run` trains them.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from experiments._common import parser
from worldmodels.config import load_config, save_config
from worldmodels.data.datasets import SequenceStream, split
from worldmodels.errors import WorldModelsError
from worldmodels.models.checkpoints import load_mdnrnn
from worldmodels.rundir import RunDir
from worldmodels.train.mdnrnn import latent_files, refit_done_head
from worldmodels.utils import STREAM_MDN, load_checkpoint, save_checkpoint


def build_parser() -> argparse.ArgumentParser:
    ap = parser(__doc__, __name__)
    ap.add_argument("--run-dir", type=Path, required=True,
                    help="A run directory with M trained (one pass, no rounds).")  # fmt: skip
    ap.add_argument(
        "--out", type=Path, required=True, help="The new run directory (must not exist)."
    )
    ap.add_argument("--epochs", type=int, default=10, help="mdnrnn.done_refit_epochs of the copy.")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    src = RunDir(args.run_dir)
    cfg = load_config(src.config)
    if cfg.mdnrnn.done_refit_epochs:
        raise WorldModelsError(f"{src.config}: M's done head was refit already")
    if args.out.exists():
        raise WorldModelsError(f"{args.out}: exists; give a new directory")
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("episodes", "latents"):
        shutil.copytree(args.run_dir / name, tmp / name, copy_function=os.link)
    shutil.copy2(src.vae, tmp / src.vae.name)
    cfg = replace(cfg, mdnrnn=replace(cfg.mdnrnn, done_refit_epochs=args.epochs))
    save_config(cfg, tmp / src.config.name)
    # M: the source's weights with the done row refit, as train_mdnrnn's last step does
    device = torch.device("cpu")
    m = cfg.mdnrnn
    model = load_mdnrnn(src.round(0).mdnrnn, cfg, device)
    train_paths, val_paths = split(latent_files(args.run_dir, cfg), cfg.seed, cfg.val_fraction)
    stream = SequenceStream(train_paths, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed,
                            STREAM_MDN)  # fmt: skip
    val_stream = SequenceStream(val_paths, m.seq_len, m.batch_size, m.shuffle_episodes, cfg.seed,
                                STREAM_MDN)  # fmt: skip
    row = refit_done_head(model, stream, val_stream, cfg, device)
    print({k.split("/")[-1]: round(v, 4) for k, v in row.items()})
    header, blob = load_checkpoint(src.round(0).mdnrnn, "mdnrnn")
    blob["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    header = {**header, "config": cfg.to_dict()}
    save_checkpoint(tmp / src.round(0).mdnrnn.name, header, blob)
    tmp.rename(args.out)
    print(f"{args.out}: ready; `worldmodels run --run-dir {args.out}` trains and scores C")


if __name__ == "__main__":
    main()
