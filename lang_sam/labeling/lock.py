"""One run at a time in an output folder: an OS file lock held for the length of a run.

The lock is ``.lang-sam/lock`` (``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows),
so the operating system releases it when the run's process ends, however it ends (``kill -9``
included): a lock left by a dead run is never in the way. Beside it, ``.lang-sam/owner.json`` says
who holds it (pid, host, start time, command), so a second run is refused at once with an error
naming the first. Network file systems whose locks are not shared between machines (some NFS
set-ups) cannot keep two machines apart.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import filelock

from lang_sam.errors import OutputLockedError

logger = logging.getLogger(__name__)

__all__ = ["OutputLock"]


class OutputLock:
    """The lock of one output folder's state folder ``state_dir`` (``<output>/.lang-sam``).

    :meth:`acquire` takes it or raises :class:`~lang_sam.errors.OutputLockedError` (with the
    holder's ``pid``, ``host``, ``started`` and ``command`` as attributes) without waiting;
    :meth:`release` gives it back (a no-op when not held). Also a context manager.
    """

    def __init__(self, state_dir: str | os.PathLike, output: str | os.PathLike):
        self.state_dir = Path(state_dir)
        self.output = Path(output)
        self.path = self.state_dir / "lock"
        self.owner_path = self.state_dir / "owner.json"
        self._lock: filelock.BaseFileLock | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> "OutputLock":
        if self._lock is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise self._locked_error() from None
        try:
            stale = self._read_owner()
            if stale:
                logger.info("%s: the run of pid %s on %s ended without releasing its lock; taking over",
                            self.output, stale.get("pid"), stale.get("host"))
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": _command()}
            tmp = self.owner_path.with_name(f".{self.owner_path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(owner) + "\n", encoding="utf-8")
            os.replace(tmp, self.owner_path)
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self.owner_path.unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _read_owner(self) -> dict:
        try:
            owner = json.loads(self.owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _locked_error(self) -> OutputLockedError:
        owner = self._read_owner()
        pid, host = owner.get("pid"), owner.get("host")
        started, command = owner.get("started"), owner.get("command")
        who = f"pid {pid} on {host}" if pid is not None else "another process"
        since = f", started {started}" if started else ""
        what = f": {command}" if command else ""
        return OutputLockedError(
            f"{self.output} is being written by another lang-sam run ({who}{since}{what}). Wait "
            "for it to finish, stop it, or choose another output folder.",
            path=str(self.output), pid=pid, host=host, started=started, command=command,
        )


def _command() -> str:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:] if sys.argv and sys.argv[0] else []
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."
