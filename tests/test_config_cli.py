"""Config presets, overrides, config.json, `info`, and one-line errors for bad input."""

from __future__ import annotations

import json
import os

import pytest

from worldmodels import config as C
from worldmodels.errors import WorldModelsError
from worldmodels.lock import RunDirLock

from .conftest import cli, one_line_error


def test_every_field_has_a_docstring():
    missing = [name for name, _, doc in C.leaf_fields() if not doc]
    assert missing == []


def test_presets_resolve_and_round_trip_through_json(tmp_path):
    for name in C.PRESETS:
        cfg = C.preset(name)
        C.save_config(cfg, tmp_path / f"{name}.json")
        assert C.load_config(tmp_path / f"{name}.json") == cfg
    C.save_config(cfg, str(tmp_path / "as_text.json"))  # a path given as text, as a user types it
    assert C.load_config(str(tmp_path / "as_text.json")) == cfg
    with pytest.raises(WorldModelsError, match="no config.json here"):
        C.load_config(str(tmp_path / "missing.json"))


def test_overrides_replace_nested_fields_and_are_validated():
    cfg = C.with_overrides(C.preset("debug"), {"vae.epochs": 3, "seed": 7})
    assert (cfg.vae.epochs, cfg.seed) == (3, 7)
    with pytest.raises(WorldModelsError, match="vae.nope"):
        C.with_overrides(cfg, {"vae.nope": 1})
    with pytest.raises(WorldModelsError, match="parallel.backend"):
        C.with_overrides(cfg, {"parallel.backend": "mpi"})
    with pytest.raises(WorldModelsError, match="--vae.epochs"):
        C.parse_value("vae.epochs", int, "many")


def test_config_json_with_a_wrong_type_names_the_key(tmp_path):
    data = C.preset("debug").to_dict()
    data["vae"]["epochs"] = "three"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(WorldModelsError, match="epochs"):
        C.load_config(tmp_path / "config.json")


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("carracing", {"vae_params": 4348547, "mdnrnn_params": 423392, "controller_params": 867}),
        ("doom", {"vae_params": 4446915, "mdnrnn_params": 1678785, "controller_params": 1088}),
    ],
)
def test_info_reports_the_papers_model_sizes(name, sizes):
    # CarRacing's M has 1,024 more than the paper's 422,368: PyTorch's LSTM has a second bias vector
    # (4 x 256). Doom's matches: that extra 2,048 cancels the 2,048 weights of the dropped restart flag.
    out = cli("info", "--preset", name, "--json")
    assert out.returncode == 0, out.stderr
    assert {
        k: v for k, v in json.loads(out.stdout).items() if k not in ("versions", "cpu")
    } == sizes


def test_collect_writes_the_resolved_config_first(tmp_path):
    out = cli("collect", "--preset", "debug", "--run-dir", str(tmp_path / "r"), "--episodes", "1",
              "--collect.hold_max", "3", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    cfg = C.load_config(tmp_path / "r" / "config.json")
    assert (cfg.collect.episodes, cfg.collect.hold_max, cfg.preset) == (1, 3, "debug")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["info", "--preset", "nope"], "unknown preset 'nope'"),
        (["collect", "--preset", "nope", "--run-dir", "{tmp}/a"], "unknown preset 'nope'"),
        (
            ["collect", "--preset", "debug", "--run-dir", "{tmp}/b", "--episodes", "many"],
            "--collect.episodes",
        ),
        (
            ["collect", "--preset", "debug", "--run-dir", "{tmp}/c", "--backend", "mpi"],
            "parallel.backend",
        ),
        (["collect", "--preset", "debug", "--run-dir", "{tmp}/d", "--bogus", "1"], "--bogus"),
        (
            [
                "collect",
                "--preset",
                "debug",
                "--run-dir",
                "{tmp}/h",
                "--parallel.encode_thread",
                "yes",
            ],
            "parallel.encode_thread",
        ),
        (
            [
                "collect",
                "--preset",
                "debug",
                "--run-dir",
                "{tmp}/i",
                "--controller.dream_starts",
                "mid",
            ],
            "controller.dream_starts",
        ),
        (["collect", "--run-dir", "{tmp}/e"], "no config.json"),
        (
            ["collect", "--preset", "debug", "--run-dir", "{tmp}/f", "--env", "NoSuchEnv-v9"],
            "NoSuchEnv-v9",
        ),
        (["train-vae", "--preset", "debug", "--run-dir", "{tmp}/g"], "no episodes"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, args, needle):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    line = one_line_error(cli(*args))
    assert needle in line


def test_help_explains_every_flag():
    out = cli("train-vae", "--help")
    assert out.returncode == 0
    for name, _, doc in C.leaf_fields():
        if name != "preset":
            assert doc.split()[0] in out.stdout


def test_a_cosine_learning_rate_runs_from_lr_to_lr_final_and_resumes_by_the_step():
    from worldmodels.train.common import scheduled_lr

    assert scheduled_lr(1e-3, 0.0, 500, 1000) == 1e-3  # 0: constant, the paper
    lrs = [scheduled_lr(1e-3, 1e-4, s, 1000) for s in range(1001)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert lrs[500] == pytest.approx(5.5e-4) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(WorldModelsError, match="mdnrnn.lr_final"):
        C.with_overrides(C.preset("debug"), {"mdnrnn.lr_final": 1.0})


def test_a_second_command_in_a_run_directory_in_use_is_refused_and_changes_nothing(tmp_path):
    run = tmp_path / "r"
    first = ["collect", "--preset", "debug", "--run-dir", str(run), "--episodes", "2", "--quiet"]
    assert cli(*first).returncode == 0
    config = (run / "config.json").read_bytes()
    second = ["train-vae", "--run-dir", str(run), "--vae.max_updates", "3", "--quiet"]
    # what a running command holds; the kernel drops it when that process dies
    holder = RunDirLock()
    holder.acquire(run, "iterate")
    try:
        line = one_line_error(cli(*second))
        assert f"in use by pid {os.getpid()} (worldmodels iterate)" in line
        assert (run / "config.json").read_bytes() == config  # the override was not saved
        assert not (run / "vae.pt").exists()
    finally:
        holder.release()
    # released (or left behind by a process that died: the file alone locks nothing): it runs
    assert (run / ".lock").exists()
    out = cli(*second)
    assert out.returncode == 0, out.stderr
    assert (run / "vae.pt").exists()
    # and the finished command let go of it
    again = RunDirLock()
    again.acquire(run, "test")
    again.release()
