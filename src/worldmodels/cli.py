"""The `worldmodels` command: a thin layer that parses flags, resolves the run's config and calls a stage.

Every stage takes ``--run-dir DIR``; a stage that starts a run takes ``--preset NAME``. Any config field can
be set as ``--section.field VALUE`` (``worldmodels STAGE --help`` lists them with their meaning). Errors a
user can cause print one line and exit 1 (2 for bad flags); nothing is lost.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from worldmodels import config as settings
from worldmodels.errors import WorldModelsError
from worldmodels.lock import RunDirLock
from worldmodels.rundir import RunDir
from worldmodels.stages import NAMES, STAGES, get


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, not a usage block, and takes no abbreviated flags
    (`--vae.e 3` is an error, not `--vae.epochs 3`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _unknown_flag(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """One line for arguments the command does not take, naming the nearest real flag."""
    import difflib

    bad = next((a for a in extra if a.startswith("-")), extra[0])
    name = bad.split("=", 1)[0]
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    if not name.startswith("-"):
        return f"unexpected argument {bad!r}"
    prefixed = [o for o in known if o.startswith(name)]
    near = prefixed if len(prefixed) == 1 else difflib.get_close_matches(name, known, 1, 0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    return f"unknown flag {name}{hint}"


# Short flags the issues and docs promise, mapped onto config fields, per command.
_ALIASES: dict[str, dict[str, tuple[str, str]]] = {
    "common": {
        "seed": ("seed", "The one seed everything derives from."),
        "device": ("device", "Torch device: auto, cpu, cuda, cuda:N or mps."),
        "workers": ("parallel.workers", "Parallel workers for real-env work."),
        "backend": ("parallel.backend", "Real-env executor: local (processes) or ray."),
        "ray-address": ("parallel.ray_address", "Existing Ray cluster address (empty: local Ray)."),
    },
    "collect": {
        "env": ("env.id", "Gymnasium id of the env to collect from (overrides the preset's)."),
        "episodes": ("collect.episodes", "Number of random-policy episodes."),
    },
    "train-controller": {
        "where": ("controller.where", "Score candidates in the dream or in the real env."),
        "temperature": ("controller.temperature", "Dream temperature tau."),
    },
    "evaluate": {
        "episodes": ("evaluate.episodes", "Real-env (or dream) episodes to score."),
        "seed": ("evaluate.seed", "Seed of the evaluation's fixed seed list."),
    },
    "run": {
        "env": ("env.id", "Gymnasium id of the env (overrides the preset's)."),
        "episodes": ("collect.episodes", "Number of random-policy episodes."),
        "temperature": ("controller.temperature", "Dream temperature tau."),
        "where": ("controller.where", "Score candidates in the dream or in the real env."),
    },
}

PER_COMMAND = ("device", "tensorboard", "parallel.")
"""Settings that say how one command runs, not what the run is: applied to that command, never saved in
config.json (a dotted prefix ending in '.' covers its section). `evaluate` adds `evaluate.`."""

READ_ONLY = ("report", "play", "info")
"""Commands that only read a run: they work beside a command that holds the run directory (no lock), and
save nothing into its config. `evaluate --out FILE` and `render --out DIR` are read-only too."""


def per_command(command: str, name: str) -> bool:
    """Whether setting `name` applies to this command alone (not saved in the run's config)."""
    prefixes = PER_COMMAND + (("evaluate.",) if command == "evaluate" else ())
    return any(name == p or (p.endswith(".") and name.startswith(p)) for p in prefixes)


def read_only(command: str, args: argparse.Namespace) -> bool:
    """Whether this command only reads the run directory (see READ_ONLY)."""
    return command in READ_ONLY or (
        command in ("evaluate", "render") and getattr(args, "out", None) is not None
    )


COMMANDS: dict[str, str] = {
    **{stage.name: stage.help for stage in STAGES},
    "run": "The whole pipeline, skipping what is done: " + ", ".join(NAMES) + ".",
    "info": "Print a preset's model sizes (parameters of V, M and C), the package versions in use and what the "
    "CPU gives V and M (bf16 or fp32).",
    "export": "Write a run's final agent (V, M, C weights, dream starts) to a folder, as shipped agents are.",
    "play": "Drive inside M's dream (or the real env) from a browser, or hand the controls to C; decode any z.",
}

PLAY_PORT = 8765

PRETRAINED_COMMANDS = ("evaluate", "render", "train-controller")
"""Commands that take --pretrained NAME|DIR (a shipped agent, or an exported one)."""


def _add_config_flags(p: argparse.ArgumentParser, command: str) -> None:
    aliases = {**_ALIASES["common"], **_ALIASES.get(command, {})}
    g = p.add_argument_group("shortcuts")
    for flag, (target, text) in aliases.items():
        scope = " (this command only)" if per_command(command, target) else ""
        g.add_argument(
            f"--{flag}", dest=f"set:{target}", metavar="V", help=f"{text} (= --{target}){scope}"
        )
    mine = p.add_argument_group(
        "how this command runs (applied to this command only, never saved in config.json)"
    )
    run = p.add_argument_group(
        "run settings (saved in RUN_DIR/config.json; defaults come from the preset)"
    )
    for name, tp, doc in settings.leaf_fields():
        if name == "preset" or name.replace("_", "-") in aliases:
            continue
        kind = getattr(tp, "__name__", str(tp))
        group = mine if per_command(command, name) else run
        group.add_argument(f"--{name}", dest=f"set:{name}", metavar=kind.upper(), help=doc)


def build_parser() -> argparse.ArgumentParser:
    from worldmodels import __version__

    parser = _Parser(prog="worldmodels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, text in COMMANDS.items():
        usage = f"worldmodels {name} " + (
            "[--preset NAME] [--json]" if name == "info" else "--run-dir DIR [options]"
        )
        p = sub.add_parser(name, help=text, description=text, usage=usage)
        if name == "info":
            p.add_argument("--preset", default="doom", help="Preset to describe (default: doom).")
            p.add_argument("--json", action="store_true", help="Print a JSON object.")
            continue
        if name == "export":
            p.usage = "worldmodels export --run-dir DIR --out DIR"
            p.add_argument(
                "--run-dir", type=Path, required=True, help="The finished run to export."
            )
            p.add_argument("--out", type=Path, required=True,
                           help="Folder to write (e.g. src/worldmodels/pretrained/doom).")  # fmt: skip
            continue
        if name == "play":
            p.usage = (
                "worldmodels play (--pretrained NAME | --run-dir DIR) [--port P] [--no-browser]"
            )
            p.add_argument("--pretrained", metavar="NAME|DIR",
                           help="A shipped agent (doom, carracing) or a folder written by `worldmodels export`.")  # fmt: skip
            p.add_argument("--run-dir", type=Path, help="A run directory the pipeline made (V and M "
                           "trained; C too for the agent mode).")  # fmt: skip
            p.add_argument("--port", type=int, default=PLAY_PORT,
                           help=f"Port on 127.0.0.1 (default {PLAY_PORT}; 0 takes a free one).")  # fmt: skip
            p.add_argument("--no-browser", action="store_true",
                           help="Only print the page's address; do not open a browser.")  # fmt: skip
            continue
        p.add_argument("--run-dir", type=Path, required=name not in PRETRAINED_COMMANDS,
                       help="The run directory every stage reads and writes.")  # fmt: skip
        p.add_argument(
            "--preset", help=f"Start a run from a preset: {', '.join(settings.PRESETS)}."
        )
        p.add_argument("--quiet", action="store_true", help="No progress bars.")
        if name == "collect":
            p.add_argument("--verify", action="store_true",
                           help="Read every episode file fully and report corrupt ones; collect nothing.")  # fmt: skip
        if name == "evaluate":
            p.add_argument("--policy", choices=["controller", "random"], default="controller",
                           help="Score the trained controller or the random policy (a baseline).")  # fmt: skip
            p.add_argument("--where", choices=["real", "dream"], default="real",
                           help="Score in the real env (default) or in M's dream.")  # fmt: skip
            p.add_argument("--env", dest="env_id", metavar="ID",
                           help="Score in another registered id of the same game (e.g. gymnasium's own "
                                "CarRacing-v3); the run's config keeps its env.")  # fmt: skip
            p.add_argument("--out", type=Path, metavar="FILE",
                           help="Write the result to FILE instead of the run directory's eval.json "
                                "(eval_random.json, eval_dream.json), e.g. one file per --seed.")  # fmt: skip
            p.add_argument("--round", type=int, dest="round_", metavar="R",
                           help="Score round R's C with its M (iterative training's rounds/R; 0: the first C) "
                                "instead of the run's agent, e.g. to see which round `iterate.choose best` "
                                "would keep. Needs --out.")  # fmt: skip
        if name == "render":
            p.add_argument("--out", type=Path, metavar="DIR",
                           help="Write real.gif and dream.gif into DIR instead of the run directory "
                                "(read-only: works while another command runs there).")  # fmt: skip
        if name in PRETRAINED_COMMANDS:
            p.add_argument("--pretrained", metavar="NAME|DIR",
                           help="Start from an agent shipped with the package (doom, carracing) or exported with "
                                "`worldmodels export` (its folder), copied into --run-dir "
                                "(default runs/pretrained-NAME)" + (
                                    "; C is trained anew on its V and M, its search drawn from --seed"
                                    if name == "train-controller"
                                    else "") + ".")  # fmt: skip
        if name == "run":
            p.add_argument("--force", metavar="STAGE", choices=NAMES,
                           help="Redo STAGE and every stage after it: " + ", ".join(NAMES) + ".")  # fmt: skip
        elif name in NAMES:
            p.add_argument("--force", action="store_true",
                           help=f"Redo {name} from scratch: remove what it and every later stage wrote "
                                "(needed to change a setting a finished stage depends on).")  # fmt: skip
        _add_config_flags(p, name)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    types = {name: tp for name, tp, _ in settings.leaf_fields()}
    out = {}
    for key, value in vars(args).items():
        if key.startswith("set:") and value is not None:
            name = key[4:]
            out[name] = settings.parse_value(name, types[name], value)
    return out


def _info(args: argparse.Namespace) -> int:
    from worldmodels.models import model_sizes
    from worldmodels.utils import cpu_precision
    from worldmodels.versions import package_versions

    cfg = settings.preset(args.preset)
    sizes = model_sizes(cfg)
    versions, cpu = package_versions(), cpu_precision()
    if (
        args.json
    ):  # the contract's keys (vae_params, mdnrnn_params, controller_params), then versions
        print(json.dumps({**sizes, "versions": versions, "cpu": cpu}))
    else:
        print(f"preset {args.preset} ({cfg.env.id})")
        for key, value in sizes.items():
            print(f"  {key:18s} {value:>12,}" if isinstance(value, int) else f"  {key:18s} {value}")
        print("versions (constraints.txt pins the ones the documented results used)")
        for key, value in versions.items():
            print(f"  {key:24s} {value or '(not installed)'}")
        bf16 = "bf16 where amp is on" if cpu["bf16"] else "fp32 (no native bf16: amp has no effect)"
        print(f"cpu: {cpu['capability']}; V and M run in {bf16}")
    return 0


def dispatch(
    command: str, args: argparse.Namespace, overrides: dict[str, Any], lock: RunDirLock
) -> int:
    """Resolve the run's config and run the command's stage (or every stage, for `run`), holding the
    run directory's lock (taken again once a new run directory exists). Settings that say how this
    command runs (PER_COMMAND) apply to it alone; a read-only command saves nothing and takes no lock."""
    from worldmodels import pipeline

    progress = not getattr(args, "quiet", False)
    readonly = read_only(command, args)
    unsaved = {k: v for k, v in overrides.items() if readonly or per_command(command, k)}
    overrides = {k: v for k, v in overrides.items() if k not in unsaved}
    if readonly:
        lock = RunDirLock.nothing()
    if command in PRETRAINED_COMMANDS and args.pretrained:
        return _pretrained(command, args, overrides, progress, unsaved, lock)
    if args.run_dir is None:
        raise WorldModelsError("--run-dir is required (or --pretrained NAME)")
    force = args.force if command == "run" else (command if getattr(args, "force", False) else None)
    lock.acquire(args.run_dir, command)
    if readonly:
        cfg = pipeline.read_config(args.run_dir, unsaved)
    else:
        cfg = pipeline.resolve(args.run_dir, args.preset, overrides, force=force, unsaved=unsaved)
    lock.acquire(args.run_dir, command)  # a new run directory exists only now
    if force:
        pipeline.force_from(args.run_dir, force)
    if command == "run":
        return pipeline.run_all(args.run_dir, cfg, progress)
    if command == "collect" and args.verify:
        from worldmodels.data.storage import verify_episodes

        bad = verify_episodes(RunDir(args.run_dir).episodes)
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

        return evaluate_command(
            args.run_dir, cfg, args.policy, args.where, progress, args.env_id, args.out, args.round_
        )
    if command == "render" and args.out is not None:
        from worldmodels.render import render_run

        if not args.out.is_dir():
            raise WorldModelsError(f"--out {args.out}: not a folder")
        paths = render_run(args.run_dir, cfg, progress, args.out)
        print(f"wrote {paths['real']} and {paths['dream']}")
        return 0
    if command == "report":
        from worldmodels.report import build_report

        print(f"wrote {build_report(args.run_dir, cfg, progress)}")
        return 0
    pipeline.run_stage(get(command), args.run_dir, cfg, progress)
    return 0


def _pretrained(
    command: str,
    args: argparse.Namespace,
    overrides: dict[str, Any],
    progress: bool,
    unsaved: dict[str, Any],
    lock: RunDirLock,
) -> int:
    """`--pretrained NAME|DIR`: copy the agent (shipped or exported) into the run directory (default
    runs/pretrained-NAME), then evaluate it, render it, or train a new C on its V and M."""
    from worldmodels import pipeline
    from worldmodels.pretrained import copy_agent, default_run_dir, pretrained_dir

    src = pretrained_dir(args.pretrained)
    run_dir = Path(args.run_dir or default_run_dir(args.pretrained))
    lock.acquire(run_dir, command)
    pipeline.check_run_dir(run_dir)
    copy_agent(src, run_dir, args.pretrained, controller=command != "train-controller")
    lock.acquire(run_dir, command)  # a new run directory exists only now
    if command == "train-controller" and "seed" in overrides:
        if not get("train-controller").started(run_dir):  # else a changed seed is refused as usual
            overrides = dict(overrides)
            _seed_new_controller(run_dir, overrides.pop("seed"))
    cfg = pipeline.resolve(run_dir, None, overrides, unsaved=unsaved)
    if command == "evaluate":
        from worldmodels.evaluate import evaluate_command

        return evaluate_command(
            run_dir, cfg, args.policy, args.where, progress, args.env_id, args.out, args.round_
        )
    if command == "train-controller":
        pipeline.run_stage(get("train-controller"), run_dir, cfg, progress)
        print(f"trained {run_dir / 'controller.pt'} on {src}'s V and M")
        return 0
    from worldmodels.render import render_run

    paths = render_run(run_dir, cfg, progress, getattr(args, "out", None))
    print(f"wrote {paths['real']} and {paths['dream']}")
    return 0


def _seed_new_controller(run_dir: Path, seed: int) -> None:
    """`train-controller --pretrained NAME --seed S` before C's training has started here: the new C's
    search draws from S. V and M were copied, not trained here, so the seed they were trained with (kept
    in provenance.json) pins nothing."""
    path = RunDir(run_dir).config
    settings.save_config(settings.with_overrides(settings.load_config(path), {"seed": seed}), path)


def _os_error(command: str, e: OSError) -> str:
    """A file system refusal the checks did not foresee (a full disk, a lost mount) as one line naming
    the path it happened at."""
    what = e.strerror or str(e)
    return (
        f"worldmodels {command}: error: {e.filename}: {what}"
        if e.filename
        else (f"worldmodels {command}: error: {what}")
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        if extra:
            parser.error(_unknown_flag(parser, extra))
        parser.print_help()
        return 2
    if extra:
        sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        sub.error(_unknown_flag(sub, extra))
    lock = RunDirLock()
    run_dir = getattr(args, "run_dir", None)
    if args.command in PRETRAINED_COMMANDS and getattr(args, "pretrained", None):
        from worldmodels.pretrained import default_run_dir

        run_dir = args.run_dir or default_run_dir(args.pretrained)
    new_run_dir = run_dir is not None and not Path(run_dir).exists()
    failed = True
    try:
        if args.command == "info":
            code = _info(args)
        elif args.command == "export":
            from worldmodels.pretrained import export_agent

            for name, size in export_agent(args.run_dir, args.out).items():
                print(f"{args.out / name}  {size / 2**20:.2f} MiB")
            code = 0
        elif args.command == "play":
            from worldmodels.play.server import play_command

            code = play_command(args.run_dir, args.pretrained, args.port, not args.no_browser)
        else:
            code = dispatch(args.command, args, _overrides(args), lock)
        failed = code != 0
        return code
    except WorldModelsError as e:
        print(f"worldmodels {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(_os_error(args.command, e), file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C, or a training loop's graceful stop (train/common.py)
        signum = getattr(e, "signum", signal.SIGINT)
        saved = "checkpoint saved; " if getattr(e, "saved", False) else ""
        print(
            f"worldmodels {args.command}: interrupted ({signal.Signals(signum).name}); {saved}"
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 128 + signum
    finally:
        lock.release()
        if failed and new_run_dir and args.command != "export":
            from worldmodels.pipeline import discard_if_unstarted

            discard_if_unstarted(Path(run_dir))


if __name__ == "__main__":
    sys.exit(main())
