"""What the command line takes: counts checked before any work, per-command flags that are not saved,
no abbreviated flags, a refusal that suggests a command doing exactly what it says, and the small ones
(--version, info --json, report saying where it wrote)."""

from __future__ import annotations

import json
import re

import pytest

from worldmodels import __version__
from worldmodels import config as C
from worldmodels.cli import build_parser, per_command

from .conftest import cli, copy_run, one_line_error

# ------------------------------------------------------------------ counts, sizes and rates, up front


@pytest.mark.parametrize(
    "flag, value, setting",
    [
        ("--episodes", "0", "evaluate.episodes"),
        ("--episodes", "-3", "evaluate.episodes"),
        ("--controller.generations", "0", "controller.generations"),
        ("--controller.eval_every", "0", "controller.eval_every"),
        ("--vae.lr", "0", "vae.lr"),
        ("--mdnrnn.hidden", "0", "mdnrnn.hidden"),
        ("--parallel.retries", "-1", "parallel.retries"),
    ],
)
def test_a_count_below_its_range_is_refused_before_any_work(
    trained_run, tmp_path, flag, value, setting
):
    run = copy_run(trained_run, tmp_path / "run")
    before = {p: (run / p).read_bytes() for p in ("eval.json", "config.json")}
    line = one_line_error(cli("evaluate", "--run-dir", str(run), flag, value, "--quiet"))
    assert setting in line and "must be" in line
    assert {p: (run / p).read_bytes() for p in before} == before  # nothing overwritten with NaN


# ----------------------------------------------------- flags that say how one command runs are not saved


COMMON = ["--device", "cpu", "--workers", "1", "--parallel.envs", "3", "--tensorboard", "false"]


@pytest.mark.parametrize(
    "command",
    [
        ["collect"],
        ["train-vae"],
        ["encode"],
        ["train-mdnrnn"],
        ["train-controller"],
        ["iterate"],
        ["evaluate", "--episodes", "2", "--seed", "5"],
        ["evaluate", "--where", "dream", "--episodes", "3"],
        ["render"],
        ["report"],
        ["run", "--evaluate.episodes", "4"],
    ],
)
def test_per_command_flags_leave_config_json_byte_identical(trained_run, tmp_path, command):
    run = copy_run(trained_run, tmp_path / "run")
    config = (run / "config.json").read_bytes()
    out = cli(*command, "--run-dir", str(run), "--quiet", *COMMON)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "config.json").read_bytes() == config


def test_a_flag_of_one_evaluation_does_not_break_the_next(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    out = cli("evaluate", "--run-dir", str(run), "--episodes", "2", "--seed", "9", "--quiet")
    assert out.returncode == 0, out.stderr
    e = json.loads((run / "eval.json").read_text())
    assert (e["episodes"], e["seed"]) == (2, 9)  # what this command was asked for
    assert C.load_config(run / "config.json").evaluate == C.preset("debug").evaluate
    out = cli("evaluate", "--run-dir", str(run), "--where", "dream", "--quiet")
    assert out.returncode == 0, out.stderr


def test_help_says_which_flags_are_saved_and_which_are_this_commands():
    out = cli("evaluate", "--help")
    assert out.returncode == 0
    text = re.sub(r"\s+", " ", out.stdout)
    mine = text.index("how this command runs")
    saved = text.index("run settings (saved in RUN_DIR/config.json")
    groups = sorted([(mine, "mine"), (saved, "saved"), (len(text), "end")])

    def group_of(flag: str) -> str:
        at = text.index(flag)
        return next(
            name for (start, name), (stop, _) in zip(groups, groups[1:]) if start < at < stop
        )

    assert group_of("--evaluate.seed INT") == group_of("--tensorboard BOOL") == "mine"
    assert group_of("--parallel.envs INT") == "mine"
    assert group_of("--controller.trials INT") == group_of("--vae.lr FLOAT") == "saved"
    assert per_command("evaluate", "evaluate.seed") and not per_command("run", "evaluate.seed")
    assert per_command("collect", "parallel.workers") and per_command("collect", "device")
    assert not per_command("collect", "collect.episodes")


# ------------------------------------------------------------------------------ abbreviations, typos


@pytest.mark.parametrize(
    "typed, nearest",
    [("--vae.epoch", "--vae.epochs"), ("--vae.e", "--vae.epochs"), ("--episode", "--episodes"),
     ("--vae.epochz", "--vae.epochs"), ("--controler.trials", "--controller.trials")],
)  # fmt: skip
def test_abbreviated_or_misspelt_flags_are_errors_naming_the_nearest(tmp_path, typed, nearest):
    run = tmp_path / "run"
    line = one_line_error(cli("collect", "--preset", "debug", "--run-dir", str(run), typed, "3"))
    assert f"unknown flag {typed}" in line and f"did you mean {nearest}?" in line
    assert not run.exists()  # nothing was started


def test_an_unknown_flag_before_the_command_names_the_nearest_too():
    line = one_line_error(cli("--vers"))
    assert "unknown flag --vers; did you mean --version?" in line


def test_no_parser_accepts_abbreviations():
    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices
    assert not parser.allow_abbrev and all(not p.allow_abbrev for p in subs.values())


# ------------------------------------------------------------------------------------- the small ones


def test_version():
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"worldmodels {__version__}"


def test_info_json_has_the_model_sizes_and_the_versions():
    from worldmodels.utils import cpu_precision
    from worldmodels.versions import package_versions

    out = cli("info", "--preset", "doom", "--json")
    data = json.loads(out.stdout)
    assert {k: data[k] for k in ("vae_params", "mdnrnn_params", "controller_params")} == {
        "vae_params": 4446915, "mdnrnn_params": 1678785, "controller_params": 1088}  # fmt: skip
    assert data["versions"] == json.loads(json.dumps(package_versions()))
    assert data["cpu"] == cpu_precision()
    text = cli("info", "--preset", "doom").stdout
    assert ("V and M run in bf16" in text) is cpu_precision()["bf16"]


def test_report_says_where_it_wrote(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    out = cli("report", "--run-dir", str(run))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"wrote {run / 'report.html'}"


# ------------------------------------------------------- a refusal suggests a command that does just that


def test_a_refusal_suggests_redoing_just_that_stage_and_the_suggestion_works(
    collected_run, tmp_path
):
    run = copy_run(collected_run, tmp_path / "run")
    line = one_line_error(
        cli("collect", "--run-dir", str(run), "--collect.hold_max", "4", "--quiet")
    )
    suggested = re.search(r"`worldmodels (.*)`", line).group(1).split()
    assert suggested == ["collect", "--run-dir", str(run), "--force", "--collect.hold_max", "4"]
    out = cli(*suggested, "--quiet")
    assert out.returncode == 0, out.stderr
    cfg = C.load_config(run / "config.json")
    assert cfg.collect.hold_max == 4
    assert not (run / "vae.pt").exists()  # collect only: no later stage ran


def test_device_names_a_gpu_user_gives():
    import torch

    from worldmodels.errors import WorldModelsError
    from worldmodels.utils import resolve_device

    for name in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert C.with_overrides(C.preset("debug"), {"device": name}).device == name
    with pytest.raises(
        WorldModelsError, match="device 'tpu': must be auto, cpu, cuda, cuda:N or mps"
    ):
        C.with_overrides(C.preset("debug"), {"device": "tpu"})
    if not torch.cuda.is_available():
        with pytest.raises(
            WorldModelsError, match=r"--device cuda:1: no CUDA device is available here"
        ):
            resolve_device("cuda:1")
    elif torch.cuda.device_count() < 8:
        with pytest.raises(WorldModelsError, match="CUDA device"):
            resolve_device("cuda:7")
