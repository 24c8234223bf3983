"""The experiments stay runnable and share one command line: every module builds its parser, `--help` works,
runs come as --run-dir / --run-dirs / --agent and nothing is positional, and they use the package's public
names only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).parent.parent / "experiments").glob("*.py") if p.stem[0] != "_"
)


def test_every_experiment_is_listed_in_the_index():
    index = importlib.import_module("experiments").__doc__
    assert EXPERIMENTS and all(f"\n{name} " in index for name in EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_has_one_command_line_style(name, capsys):
    from experiments._common import RUN_FLAGS

    module = importlib.import_module(f"experiments.{name}")
    ap = module.build_parser()
    assert ap.prog == f"python -m experiments.{name}"
    flags = [s for a in ap._actions for s in a.option_strings]
    positional = [a.dest for a in ap._actions if not a.option_strings]
    assert positional == [], f"{name}: positional arguments {positional}"
    assert "--quiet" in flags
    runs = [f for f in flags if "run" in f and f not in ("--run-dir", "--run-dirs")]
    assert runs == [], f"{name}: a run is passed as {runs}, not one of {RUN_FLAGS}"
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0 and f"python -m experiments.{name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_uses_public_names_of_the_package(name):
    tree = ast.parse((Path(__file__).parent.parent / "experiments" / f"{name}.py").read_text())
    private = [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worldmodels")
        for a in node.names
        if a.name.startswith("_")
    ]
    assert private == []
