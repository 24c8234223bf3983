"""The versions of what a result depends on: recorded in every eval.json, printed by `worldmodels info`.

The documented results were measured with the exact versions in `constraints.txt` (what `make setup` and
CI install); another gymnasium can change CarRacing's pixels or ends, another vizdoom a scenario's
difficulty, another torch the float rounding of V and M.
"""

from __future__ import annotations

import platform
from functools import cache
from importlib import metadata

PACKAGES = ("worldmodels-torch", "torch", "numpy", "gymnasium", "vizdoom", "box2d", "pygame-ce", "cma",
            "opencv-python-headless", "isal", "ray")  # fmt: skip


@cache
def package_versions() -> dict[str, str | None]:
    """{package: installed version (None when absent)}, plus the Python version."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
