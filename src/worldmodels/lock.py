"""One command at a time in a run directory (kept free of torch: the CLI imports it before any work)."""

from __future__ import annotations

import os
from pathlib import Path

from worldmodels.errors import WorldModelsError
from worldmodels.rundir import RunDir

LOCK_FILE = ".lock"
"""RUN_DIR/.lock: held (flock) by the command working in the run directory; says which one."""


class RunDirLock:
    """One command at a time in a run directory. Two commands training the same stage at once would both
    write its checkpoints and metrics; the second is refused with a one-line error naming the first.
    The lock is an advisory flock on RUN_DIR/.lock, so the kernel releases it when its process dies:
    a killed command never leaves the directory locked. Without fcntl (not POSIX) nothing is locked."""

    def __init__(self, enabled: bool = True) -> None:
        self.fd: int | None = None
        self.enabled = enabled

    @classmethod
    def nothing(cls) -> RunDirLock:
        """A lock that locks nothing: for commands that only read a run (they may run beside one)."""
        return cls(enabled=False)

    def acquire(self, run_dir: Path, command: str) -> None:
        """Lock run_dir if it exists and is not locked by this object already (else do nothing). The holder
        is the run's one writer: what killed commands' atomic writes left there is deleted on taking it."""
        run_dir = Path(run_dir)
        if not self.enabled or self.fd is not None or not run_dir.is_dir():
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        path = run_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorldModelsError(
                f"--run-dir {run_dir}: in use by {holder}; wait for it to finish or stop it "
                "(two commands in one run directory would overwrite each other's checkpoints)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} (worldmodels {command})\n".encode())
        self.fd = fd
        RunDir(run_dir).remove_stale_temporaries()

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None
