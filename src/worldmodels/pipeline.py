"""Stages, their order, when each is done, and `worldmodels run`, which chains them and skips what is done.

A run directory holds one config (config.json). A later command may change settings only where no
finished stage depends on them; otherwise it is refused with the stage and the flag named, and
``worldmodels run --force STAGE`` redoes that stage and every one after it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from worldmodels import config as C
from worldmodels.errors import WorldModelsError
from worldmodels.utils import atomic_write_text

STAGES = [
    "collect",
    "train-vae",
    "encode",
    "train-mdnrnn",
    "train-controller",
    "iterate",
    "evaluate",
    "render",
    "report",
]

# Config fields each stage's output depends on (a trailing dot means the whole section); cumulative.
_OWN_FIELDS = {
    "collect": ["seed", "env.", "collect."],
    "train-vae": ["vae.", "val_fraction"],
    "encode": [],
    "train-mdnrnn": ["mdnrnn."],
    "train-controller": ["controller."],
    "iterate": ["iterate."],
    "evaluate": [],  # a measurement: changing it re-measures (see stage_done), invalidates nothing
    "render": [],
    "report": [],
}


def stage_fields(stage: str) -> list[str]:
    out: list[str] = []
    for s in STAGES[: STAGES.index(stage) + 1]:
        out += _OWN_FIELDS[s]
    return out


def _touches(changed: list[str], patterns: list[str]) -> list[str]:
    return [
        c for c in changed if any(c == p or (p.endswith(".") and c.startswith(p)) for p in patterns)
    ]


# ------------------------------------------------------------------------------------------ stage outputs


def _outputs(run_dir: Path, stage: str) -> list[Path]:
    """What a stage writes (removed by --force)."""
    return {
        "collect": [run_dir / "episodes"],
        "train-vae": [run_dir / "vae.pt", run_dir / "reconstructions.png"],
        "encode": [run_dir / "latents"],
        "train-mdnrnn": [run_dir / "mdnrnn.pt", run_dir / "mixture_usage.json"],
        "train-controller": [run_dir / "controller.pt", run_dir / "es_state.pkl"],
        "iterate": [run_dir / "rounds"],
        "evaluate": [
            run_dir / "eval.json",
            run_dir / "eval_random.json",
            run_dir / "eval_dream.json",
        ],
        "render": [run_dir / "real.gif", run_dir / "dream.gif"],
        "report": [run_dir / "report.html"],
    }[stage]


def stage_done(run_dir: Path, stage: str, cfg: C.Config) -> bool:
    run_dir = Path(run_dir)
    if stage == "collect":
        from worldmodels.data.collect import missing_episodes

        return not missing_episodes(run_dir / "episodes", cfg.collect.episodes)
    if stage in ("train-vae", "train-mdnrnn", "train-controller"):
        name = {"train-vae": "vae", "train-mdnrnn": "mdnrnn", "train-controller": "controller"}[
            stage
        ]
        return _finished(run_dir / f"{name}.pt")
    if stage == "encode":
        from worldmodels.train.vae import missing_latents

        return (run_dir / "latents").is_dir() and not missing_latents(run_dir)
    if stage == "iterate":
        from worldmodels.train.iterate import iterate_done

        return iterate_done(run_dir, cfg)
    if stage == "evaluate":
        from worldmodels.evaluate import evaluation_is_current, expected_evaluations

        return all(
            evaluation_is_current(run_dir / n, cfg) for n in expected_evaluations(cfg).values()
        )
    return all(p.exists() for p in _outputs(run_dir, stage))


def _finished(path: Path) -> bool:
    if not path.exists():
        return False
    from worldmodels.utils import read_header

    kind = path.stem
    header = read_header(path, kind)
    return bool(header.get("finished"))


# ------------------------------------------------------------------------------------------ config resolution


def resolve(
    run_dir: Path, preset_name: str | None, overrides: dict[str, Any], force: str | None = None
) -> C.Config:
    """The run's config: config.json (or the preset, for a new run) with overrides, saved before work."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if path.exists():
        old = C.load_config(path)
        if preset_name and preset_name != old.preset:
            raise WorldModelsError(
                f"--preset {preset_name}: {run_dir} was started with preset {old.preset!r}; "
                "use another --run-dir"
            )
        new = C.with_overrides(old, overrides)
        changed = C.diff(old, new)
        if changed:
            start = STAGES.index(force) if force else len(STAGES)
            rounds = [c for c in changed if c.startswith("iterate.")]
            if rounds and _iterate_can_change(run_dir, old, new, rounds):
                changed = [c for c in changed if c not in rounds]  # harmless: see the function
            for stage in STAGES[:start]:
                hit = _touches(changed, stage_fields(stage))
                if hit and stage_done(run_dir, stage, old):
                    flag = hit[0]
                    raise WorldModelsError(
                        f"--{flag}: stage {stage} is finished with {flag}={_get(old, flag)!r}; "
                        f"changing it needs `worldmodels run --force {stage}` (redoes {stage} and later)"
                    )
            C.save_config(new, path)
        return new
    if not preset_name:
        raise WorldModelsError(f"{path}: no config.json here; start the run with --preset NAME")
    cfg = C.with_overrides(C.preset(preset_name), overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    C.save_config(cfg, path)
    return cfg


def _iterate_can_change(run_dir: Path, old: C.Config, new: C.Config, changed: list[str]) -> bool:
    """Iterative training may be switched on or extended after the run's other stages finished: no
    round has started yet, or only iterate.rounds grows (finished rounds stay valid). The iterate stage
    then removes what the old agent's evaluation and pictures were."""
    if not (run_dir / "rounds").exists():
        return True
    return changed == ["iterate.rounds"] and new.iterate.rounds > old.iterate.rounds


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def force_from(run_dir: Path, stage: str) -> None:
    """Remove the outputs of `stage` and of every stage after it."""
    if stage not in STAGES:
        raise WorldModelsError(
            f"--force {stage}: unknown stage; choose one of: {', '.join(STAGES)}"
        )
    for s in STAGES[STAGES.index(stage) :]:
        if s == "iterate" and (Path(run_dir) / "config.json").exists():
            _remove_round_episodes(Path(run_dir), C.load_config(Path(run_dir) / "config.json"))
        for p in _outputs(run_dir, s):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


def _remove_round_episodes(run_dir: Path, cfg: C.Config) -> None:
    """Iterative training's episodes (and latents): every index after the random-policy ones."""
    from worldmodels.data.storage import episode_index, list_episodes

    for folder in (run_dir / "episodes", run_dir / "latents"):
        for p in list_episodes(folder):
            if (episode_index(p) or 0) >= cfg.collect.episodes:
                p.unlink()


# ------------------------------------------------------------------------------------------ running stages


# Each stage is one library function taking (run_dir, cfg, progress), imported only when it runs.
_STAGE_FUNCTIONS = {
    "collect": ("worldmodels.data.collect", "collect"),
    "train-vae": ("worldmodels.train.vae", "train_vae"),
    "encode": ("worldmodels.train.vae", "encode_latents"),
    "train-mdnrnn": ("worldmodels.train.mdnrnn", "train_mdnrnn"),
    "train-controller": ("worldmodels.train.controller", "train_controller"),
    "iterate": ("worldmodels.train.iterate", "iterate"),
    "evaluate": ("worldmodels.evaluate", "evaluate_run"),
    "render": ("worldmodels.render", "render_run"),
    "report": ("worldmodels.report", "build_report"),
}


def run_stage(stage: str, run_dir: Path, cfg: C.Config, progress: bool = True) -> Any:
    module, name = _STAGE_FUNCTIONS[stage]
    return getattr(importlib.import_module(module), name)(Path(run_dir), cfg, progress)


def record_time(run_dir: Path, stage: str, seconds: float) -> None:
    """Wall time per stage, summed over resumed attempts, in RUN_DIR/timings.json."""
    path = Path(run_dir) / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = round(data.get(stage, 0.0) + seconds, 2)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def run_all(run_dir: Path, cfg: C.Config, progress: bool = True) -> int:
    """Every stage in order, skipping what is done. The top bar shows the stage, how many are done and the
    time spent so far; each stage's own bar (below it) shows that stage's progress."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=len(STAGES), desc="pipeline", disable=not progress, dynamic_ncols=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} stages done, {elapsed} so far")  # fmt: skip
    with bar:
        for k, stage in enumerate(STAGES, 1):
            head = f"[{k}/{len(STAGES)}] {stage}"
            if stage_done(run_dir, stage, cfg):
                tqdm.write(f"{head}: done, skipped")
                bar.update(1)
                continue
            tqdm.write(f"{head} (total elapsed {_fmt(time.perf_counter() - t0)})")
            bar.set_description_str(f"pipeline, now {stage}")
            start = time.perf_counter()
            run_stage(stage, run_dir, cfg, progress)
            record_time(run_dir, stage, time.perf_counter() - start)
            tqdm.write(f"{head}: finished in {_fmt(time.perf_counter() - start)}")
            bar.update(1)
    _print_scores(run_dir)
    print(f"total {_fmt(time.perf_counter() - t0)}; report: {Path(run_dir) / 'report.html'}")
    return 0


def _print_scores(run_dir: Path) -> None:
    for name, label in (("eval.json", "controller"), ("eval_random.json", "random policy")):
        path = Path(run_dir) / name
        if path.exists():
            e = json.loads(path.read_text())
            print(f"{label:>14s}: {e['mean']:.1f} +- {e['std']:.1f} over {e['episodes']} episodes "
                  f"({e['where']}, {e['env']})")  # fmt: skip


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def dispatch(command: str, args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    progress = not getattr(args, "quiet", False)
    if command == "run":
        if args.force:
            if args.force not in STAGES:
                raise WorldModelsError(
                    f"--force {args.force}: unknown stage; choose one of: {', '.join(STAGES)}"
                )
            cfg = resolve(args.run_dir, args.preset, overrides, force=args.force)
            force_from(args.run_dir, args.force)
        else:
            cfg = resolve(args.run_dir, args.preset, overrides)
        return run_all(args.run_dir, cfg, progress)
    if command in ("evaluate", "render") and args.pretrained:
        from worldmodels.pretrained import pretrained_command

        return pretrained_command(command, args, overrides, progress)
    if args.run_dir is None:
        raise WorldModelsError("--run-dir is required (or --pretrained NAME)")
    cfg = resolve(args.run_dir, args.preset, overrides)
    if command == "collect" and args.verify:
        from worldmodels.data.storage import verify_episodes

        bad = verify_episodes(Path(args.run_dir) / "episodes")
        for line in bad:
            print(line)
        if bad:
            raise WorldModelsError(
                f"{len(bad)} corrupt episode file(s); delete them and rerun collect"
            )
        print("all episodes readable")
        return 0
    if command == "evaluate":
        from worldmodels.evaluate import evaluate_command

        return evaluate_command(args.run_dir, cfg, args.policy, args.where, progress)
    start = time.perf_counter()
    run_stage(command, args.run_dir, cfg, progress)
    record_time(args.run_dir, command, time.perf_counter() - start)
    return 0
