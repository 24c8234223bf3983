"""The one exception type a user can cause; the CLI prints it as one line and exits non-zero."""

DISTRIBUTION = "worldmodels-torch"
"""The name the package is installed by (`pip install worldmodels-torch`); it imports as `worldmodels`."""


class WorldModelsError(Exception):
    """A problem the user can fix (bad flag, missing or corrupt file, mismatched checkpoint)."""


def install_hint(extra: str) -> str:
    """The pip command that installs an optional part of the package."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
