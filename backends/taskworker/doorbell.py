"""The SQLite doorbell: producers on this machine tell idle workers a task is ready.

SQLite has no notifications, so a worker would learn of a new task only at its next poll
(half an interval on average). Every worker process binds a datagram socket in a folder named
after the database file (`bind`); a producer that enqueues sends each socket there a datagram
once its transaction commits (`ring`, hooked to django-tasks' ``task_enqueued`` in
``backends.taskworker.apps``). A producer without that hook (the app not in INSTALLED_APPS,
another user, another machine) rings nothing: workers still poll, every safety interval.

The folder is private (0700, `backends.private`): only this user's processes ring. Ringing
never blocks and never raises: it runs inside a web request. A socket left by a killed worker
refuses the datagram and is removed by the next ring.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import socket
from pathlib import Path

from backends import private

LARGEST = 1024  # bytes: a ring says a backend, a queue and a time, never more


def folder_for(database: str) -> Path | None:
    """Where the doorbells of one SQLite file hang; None for a database in memory.

    Under the runtime folder the console's control socket uses (`private.runtime_folder`),
    so a web server and a worker started from one environment meet.
    """
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    return private.runtime_folder() / "doorbell" / _digest(database)


@functools.lru_cache(maxsize=8)
def _digest(database: str) -> str:
    """The file's real path, hashed: resolved once per process, not at every enqueue."""
    real = os.path.realpath(database.removeprefix("file:").partition("?")[0])
    return hashlib.sha256(real.encode()).hexdigest()[:16]


def bind(database: str) -> socket.socket:
    """This process's doorbell: a datagram socket only this user can ring. Raises OSError
    (`private.UnsafePath` included) with a line that says why there is none."""
    where = folder_for(database)
    if where is None:
        raise OSError("the database is in memory: no other process can enqueue to it")
    path = private.folder(where) / f"{os.getpid()}.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a pid reused after a worker was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def unbind(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        name = sock.getsockname()
        sock.close()
        os.unlink(name)


_private: dict[Path, Path] = {}  # folders found private, by where they were looked for


def _checked(where: Path) -> Path | None:
    """The folder once it exists and is private; None before (nobody has bound yet), or if
    it is not private (then nobody is rung). Checked once per process."""
    if where not in _private:
        if not where.is_dir():
            return None
        try:
            _private[where] = private.folder(where, make=False)
        except OSError:
            return None
    return _private[where]


def ring(database: str, message: bytes) -> None:
    """Tell every worker of ``database`` on this machine. Never blocks, never raises."""
    where = folder_for(database)
    if where is None or len(message) > LARGEST:
        return
    checked = _checked(where)
    if checked is None:
        return  # no worker has bound a doorbell here: nobody to tell
    try:
        names = os.listdir(checked)
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            path = os.path.join(checked, name)
            try:
                sock.sendto(message, path)
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # its worker is gone
            except OSError:
                pass  # a full queue: that worker has rings to read already
