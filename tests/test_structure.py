"""The package's shape: layers that only import downward and no import cycles (lazy imports inside functions
included), the run directory's file names spelled in one module, and the stage list as the one
description of the stages that the CLI, --force and the refusal of changed settings read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from worldmodels import stages
from worldmodels.errors import WorldModelsError

from .conftest import cli

PACKAGE = Path(stages.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its body (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t != "worldmodels":
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30 and "worldmodels.workers" in graph["worldmodels.evaluate"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


LAYERS: list[tuple[str, ...]] = [
    ("errors", "versions"),  # torch-free basics
    (
        "config",
        "utils",
        "rundir",
        "lock",
    ),  # settings, file I/O, the run directory's paths and its lock
    (
        "models",
        "envs",
        "es",
        "parallel",
    ),  # V, M, C and their checkpoints; env adapters; CMA-ES; executors
    (
        "data.storage",
        "data.datasets",
        "data.starts",
    ),  # episode files, streams for training, dream starts
    ("agent",),  # V, M and C acting in the real env
    ("episodes", "dream"),  # playing real episodes; M's dream
    ("data.collect", "workers"),  # random-policy collection; real-env work on workers
    ("evaluate", "render"),  # scoring and picturing an agent
    ("train",),  # V's, M's and C's training, iterative training
    ("report", "stages", "pipeline", "pretrained", "api", "play"),  # what the CLI and users call
    ("cli",),
]
"""The package's layers, lowest first: a module may import its own layer and the ones below, never one
above (lazy imports inside functions included)."""


def layer_of(module: str) -> int:
    name = module.removeprefix("worldmodels.")
    for i, layer in enumerate(LAYERS):
        if any(name == part or name.startswith(part + ".") for part in layer):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {n}" for m, ns in graph.items() if m != "worldmodels"
                  for n in ns if layer_of(n) > layer_of(m))  # fmt: skip


def test_every_module_imports_only_its_layer_and_those_below():
    graph = import_graph()
    assert upward_imports(graph) == []


def test_the_layer_check_finds_an_upward_import():
    graph = import_graph()
    graph["worldmodels.agent"] = graph["worldmodels.agent"] | {"worldmodels.train.vae"}
    assert upward_imports(graph) == ["worldmodels.agent -> worldmodels.train.vae"]


def test_no_module_but_rundir_spells_a_run_directorys_file_names():
    names = ['"vae.pt"', '"mdnrnn.pt"', '"controller.pt"', '"eval.json"', '"es_state.pkl"',
             '/ "rounds"', '/ "latents"', '/ "episodes"', '"report.html"', '"timings.json"',
             '"config.json"']  # fmt: skip
    spelled = {
        str(p.relative_to(PACKAGE)): [n for n in names if n in p.read_text()]
        for p in PACKAGE.rglob("*.py")
        if p.name != "rundir.py"
    }
    assert {k: v for k, v in spelled.items() if v} == {}


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_playing_episodes_lives_in_one_module():
    graph = import_graph()
    for user in ("worldmodels.workers", "worldmodels.data.collect", "worldmodels.render"):
        assert "worldmodels.episodes" in graph[user], user
    assert "worldmodels.evaluate" not in graph["worldmodels.train.controller"]


def test_every_stage_is_declared_once_and_resolvable():
    names = [s.name for s in stages.STAGES]
    assert len(set(names)) == len(names)
    for s in stages.STAGES:
        assert callable(stages._function(s.run)), s.name
        if s.done:
            assert callable(stages._function(s.done)), s.name
        assert s.outputs and s.help
    with pytest.raises(WorldModelsError, match="unknown stage"):
        stages.get("nope")


def test_cli_help_and_force_read_the_stage_list():
    out = cli("--help")
    for s in stages.STAGES:
        assert s.name in out.stdout and s.help.split("(")[0].strip()[:40] in out.stdout
    text = re.sub(r"-\s+", "-", cli("run", "--help").stdout)  # argparse wraps at hyphens
    assert re.search(
        r"--force STAGE\s+Redo STAGE and every stage after it: " + ", ".join(stages.NAMES),
        re.sub(r"\s+", " ", text),
    )


def test_dream_starts_are_gathered_once_by_encode_and_kept_current(trained_run, tmp_path):
    import numpy as np

    from worldmodels.data.starts import STARTS_IN_LATENTS, dream_starts, write_dream_starts
    from worldmodels.data.storage import list_episodes, load_npz

    from .conftest import copy_run

    run = copy_run(trained_run, tmp_path / "run")
    path = run / "latents" / STARTS_IN_LATENTS
    assert path.exists()  # written by the encode stage
    files = list_episodes(run / "latents")
    firsts = [load_npz(p, ("mu", "logvar")) for p in files]
    mu, logvar = dream_starts(run)
    np.testing.assert_array_equal(mu, np.stack([f["mu"][0] for f in firsts]))
    np.testing.assert_array_equal(logvar, np.stack([f["logvar"][0] for f in firsts]))
    # a latent file more (iterative training): the starts follow, reading only the new file
    (run / "latents" / files[0].name).replace(run / "latents" / "ep_000099.npz")
    write_dream_starts(run)
    mu2, _ = dream_starts(run)
    np.testing.assert_array_equal(mu2, np.concatenate([mu[1:], mu[:1]]))
