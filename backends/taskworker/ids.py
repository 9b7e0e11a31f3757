"""Worker ids ``hostname:pid:thread``: a task row tells which thread of which process ran it.

With the host and pid in the id, a RUNNING task whose process is gone from this host is known
to be stuck, and tasks of other hosts (a shared PostgreSQL) are recognisably not ours.
django-tasks-db caps ids at 64 characters, so long hostnames are shortened.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

MAX_LENGTH = 64
_TAIL = len(":4194304:9999")  # the longest pid Linux hands out, and a generous thread number


class WorkerId(NamedTuple):
    host: str
    pid: int
    thread: int

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.thread}"


def this_host() -> str:
    """The hostname as it appears in ids: without ':' and short enough to fit."""
    return socket.gethostname().replace(":", "-")[: MAX_LENGTH - _TAIL] or "localhost"


def make(pid: int, thread: int) -> str:
    return str(WorkerId(this_host(), pid, thread))


def parse(worker_id: str) -> WorkerId | None:
    """``None`` for ids this worker did not write (db_worker's random ones, other tools')."""
    host, _, rest = worker_id.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not pid.isdigit() or not rest.isdigit():
        return None
    return WorkerId(host, int(pid), int(rest))
