"""The one exception type a user can cause; the CLI prints it as one line and exits non-zero."""


class WorldModelsError(Exception):
    """A problem the user can fix (bad flag, missing or corrupt file, mismatched checkpoint)."""
