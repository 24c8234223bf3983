"""A run's config across commands, and `worldmodels run`, which chains the stages (stages.py) and skips
what is done.

A run directory holds one config (config.json). A later command may change settings only where no stage
that wrote output depends on them; otherwise it is refused with the stage and the flag named, and
``worldmodels run --force STAGE`` redoes that stage and every one after it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from worldmodels import config as settings
from worldmodels.errors import WorldModelsError
from worldmodels.lock import LOCK_FILE
from worldmodels.rundir import RunDir
from worldmodels.stages import NAMES, STAGES, Stage, depends_on
from worldmodels.utils import atomic_write_text


def _touches(changed: list[str], patterns: list[str] | tuple[str, ...]) -> list[str]:
    return [
        c for c in changed if any(c == p or (p.endswith(".") and c.startswith(p)) for p in patterns)
    ]


# ------------------------------------------------------------------------------------------ config resolution


def resolve(
    run_dir: Path,
    preset_name: str | None,
    overrides: dict[str, Any],
    force: str | None = None,
    unsaved: dict[str, Any] | None = None,
) -> settings.Config:
    """The run's config: config.json (or the preset, for a new run) with overrides, saved before work;
    `unsaved` overrides apply to this command alone (evaluate --out) and are not saved."""
    return settings.with_overrides(
        _resolve_saved(Path(run_dir), preset_name, overrides, force), unsaved or {}
    )


def _resolve_saved(
    run_dir: Path, preset_name: str | None, overrides: dict[str, Any], force: str | None
) -> settings.Config:
    check_run_dir(run_dir)
    path = RunDir(run_dir).config
    if path.exists() and preset_name and not any_stage_started(run_dir):
        path.unlink()  # a config no stage used pins nothing: the new command starts the run afresh
    if path.exists():
        old = settings.load_config(path)
        if preset_name and preset_name != old.preset:
            raise WorldModelsError(
                f"--preset {preset_name}: {run_dir} was started with preset {old.preset!r}; "
                "use another --run-dir"
            )
        new = with_env_needs(settings.with_overrides(old, overrides), overrides)
        changed = settings.diff(old, new)
        if changed:
            _refuse_pinned(run_dir, old, new, changed, force)
            settings.save_config(new, path)
        return new
    if not preset_name:
        raise WorldModelsError(f"{path}: no config.json here; start the run with --preset NAME")
    cfg = with_env_needs(
        settings.with_overrides(settings.preset(preset_name), overrides), overrides
    )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorldModelsError(f"--run-dir {run_dir}: cannot create it ({e.strerror})") from None
    settings.save_config(cfg, path)
    return cfg


def read_config(run_dir: Path, unsaved: dict[str, Any]) -> settings.Config:
    """The run's config with this command's overrides, for a command that only reads the run: nothing is
    saved (it may run beside a command that holds the run directory)."""
    check_run_dir(Path(run_dir))
    return settings.with_overrides(settings.load_config(RunDir(run_dir).config), unsaved)


def any_stage_started(run_dir: Path) -> bool:
    """Whether any stage has written output into the run directory."""
    return any(stage.started(Path(run_dir)) for stage in STAGES)


def discard_if_unstarted(run_dir: Path) -> None:
    """After a failed first command in a new run directory: if no stage wrote anything, remove what the
    command made (config.json, empty folders, the lock file, the directory itself), so the mistake leaves
    nothing behind that a corrected command would trip on."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any_stage_started(run_dir):
        return
    run = RunDir(run_dir)
    for path in (run.config, run / LOCK_FILE, run.timings, run.metrics):
        path.unlink(missing_ok=True)
    for stage in STAGES:
        stage.remove_outputs(run_dir)  # only empty ones are left (none started)
    try:
        run_dir.rmdir()
    except OSError:  # something else is there: leave it
        pass


def check_run_dir(run_dir: Path) -> None:
    """One-line errors for the run-directory mistakes a user makes: a file, or a folder it cannot write."""
    if run_dir.exists() and not run_dir.is_dir():
        raise WorldModelsError(f"--run-dir {run_dir}: is a file, not a directory")
    if run_dir.is_dir() and not os.access(run_dir, os.W_OK | os.X_OK):
        raise WorldModelsError(f"--run-dir {run_dir}: not writable by this user")


def with_env_needs(cfg: settings.Config, overrides: dict[str, Any]) -> settings.Config:
    """What the env needs that the preset may not give: a dream scores with +1 per step alive (Doom) or
    with M's reward head, so a run whose C is trained in the dream (controller.where=dream or iterative
    training) on any other env gets the reward head. Explicitly switching it off there is refused now,
    before any stage runs, rather than after V and M were trained."""
    from worldmodels.envs import dream_can_score

    uses_dream = cfg.controller.where == "dream" or cfg.iterate.rounds > 0
    if not uses_dream or dream_can_score(cfg):
        return cfg
    if "mdnrnn.reward_head" in overrides:
        raise WorldModelsError(
            f"--mdnrnn.reward_head false: C is trained in the dream, and the reward of {cfg.env.id} is "
            "not +1 per step alive, so M must predict it (or train C with --controller.where real)"
        )
    return replace(cfg, mdnrnn=replace(cfg.mdnrnn, reward_head=True))


def _refuse_pinned(
    run_dir: Path, old: settings.Config, new: settings.Config, changed: list[str], force: str | None
) -> None:
    """Refuse a change that a stage's written output depends on. A finished stage pins its own and every
    earlier stage's fields; an unfinished one that has written something pins its own (except those a
    resume may extend); a stage that wrote nothing pins nothing. Stages from --force on are redone."""
    start = NAMES.index(force) if force else len(STAGES)
    rounds = [c for c in changed if c.startswith("iterate.")]
    if rounds and _iterate_can_change(run_dir, old, new, rounds):
        changed = [c for c in changed if c not in rounds]  # harmless: see the function
    for stage in STAGES[:start]:
        if not stage.started(run_dir):
            continue
        done = stage.is_done(run_dir, old)
        if done:
            hit = _touches(changed, depends_on(stage))
        else:  # an unfinished stage may take new values of its resumable fields
            hit = [c for c in _touches(changed, stage.fields) if c not in stage.resumable]
        if hit:
            flag = hit[0]
            state = "finished" if done else "started"
            raise WorldModelsError(
                f"--{flag}: stage {stage.name} is {state} with {flag}={_get(old, flag)!r}; to change it, "
                f"use another --run-dir, or redo {stage.name} (removing its and later stages' outputs) "
                f"with `worldmodels {stage.name} --run-dir {run_dir} --force --{flag} {_get(new, flag)}`"
            )


def _iterate_can_change(
    run_dir: Path, old: settings.Config, new: settings.Config, changed: list[str]
) -> bool:
    """Iterative training may be switched on or extended after the run's other stages finished: no
    round has started yet, or only iterate.rounds grows and/or iterate.choose changes (finished rounds
    stay valid; choosing reads their scores). The iterate stage then removes what the old agent's
    evaluation and pictures were."""
    if not RunDir(run_dir).rounds.exists():
        return True
    return set(changed) <= {"iterate.rounds", "iterate.choose"} and (
        new.iterate.rounds >= old.iterate.rounds
    )


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def force_from(run_dir: Path, name: str) -> None:
    """Remove the outputs of stage `name` and of every stage after it."""
    from worldmodels.stages import get

    first = get(name)
    for stage in STAGES[STAGES.index(first) :]:
        if stage.name == "iterate" and RunDir(run_dir).config.exists():
            _remove_round_episodes(Path(run_dir), settings.load_config(RunDir(run_dir).config))
        stage.remove_outputs(Path(run_dir))


def _remove_round_episodes(run_dir: Path, cfg: settings.Config) -> None:
    """Iterative training's episodes (and latents): every index after the random-policy ones."""
    from worldmodels.data.storage import episode_index, list_episodes

    for folder in (RunDir(run_dir).episodes, RunDir(run_dir).latents):
        for p in list_episodes(folder):
            if (episode_index(p) or 0) >= cfg.collect.episodes:
                p.unlink()


# ------------------------------------------------------------------------------------------ running stages


def run_stage(stage: Stage, run_dir: Path, cfg: settings.Config, progress: bool = True) -> None:
    """Run one stage and add its wall time to RUN_DIR/timings.json."""
    start = time.perf_counter()
    stage.execute(run_dir, cfg, progress)
    record_time(run_dir, stage.name, time.perf_counter() - start)


def record_time(run_dir: Path, stage: str, seconds: float) -> None:
    """Wall time per stage, summed over resumed attempts, in RUN_DIR/timings.json."""
    path = RunDir(run_dir).timings
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = round(data.get(stage, 0.0) + seconds, 2)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def run_all(run_dir: Path, cfg: settings.Config, progress: bool = True) -> int:
    """Every stage in order, skipping what is done. The top bar shows the stage, how many are done and the
    time spent so far; each stage's own bar (below it) shows that stage's progress."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=len(STAGES), desc="pipeline", disable=not progress, dynamic_ncols=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} stages done, {elapsed} so far")  # fmt: skip
    with bar:
        for k, stage in enumerate(STAGES, 1):
            head = f"[{k}/{len(STAGES)}] {stage.name}"
            if stage.is_done(run_dir, cfg):
                tqdm.write(f"{head}: done, skipped")
                bar.update(1)
                continue
            tqdm.write(f"{head} (total elapsed {_fmt(time.perf_counter() - t0)})")
            bar.set_description_str(f"pipeline, now {stage.name}")
            start = time.perf_counter()
            run_stage(stage, run_dir, cfg, progress)
            tqdm.write(f"{head}: finished in {_fmt(time.perf_counter() - start)}")
            bar.update(1)
    _print_scores(run_dir)
    print(f"total {_fmt(time.perf_counter() - t0)}; report: {Path(run_dir) / 'report.html'}")
    return 0


def _print_scores(run_dir: Path) -> None:
    for policy, label in (("controller", "controller"), ("random", "random policy")):
        path = RunDir(run_dir).evaluation(policy)
        if path.exists():
            e = json.loads(path.read_text())
            print(f"{label:>14s}: {e['mean']:.1f} +- {e['std']:.1f} over {e['episodes']} episodes "
                  f"({e['where']}, {e['env']})")  # fmt: skip


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
