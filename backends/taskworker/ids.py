"""Worker ids ``host:pid:thread@scope``: a task row tells which thread of which process ran it.

A pid names one process only within one pid namespace of one boot of one machine: two
containers with the same hostname have their own pid 7, and so have two boots of one host. The
``scope`` is a short hash of the boot id and the pid-namespace inode, so a RUNNING task whose
worker pid is dead is judged stuck only by a worker that sees the same pids (`is_local`); tasks
of other hosts, containers or boots are recognisably not ours. The log prefix is the readable
part, ``host:pid:thread`` (`label`): every line of one machine would carry the same scope.

Ids written before the scope existed (``host:pid:thread``) parse with ``scope=None``; they are
never local, since the namespace they came from is unknown (see `recovery.find_stuck`).
django-tasks-db caps ids at 64 characters, so long hostnames are shortened.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import string
from typing import NamedTuple

import psutil

MAX_LENGTH = 64
SCOPE_LENGTH = 8  # hex digits: two live namespaces share a scope with odds of 1 in 4 billion
# The longest pid Linux hands out, a generous thread number, and the scope.
_TAIL = len(":4194304:9999@") + SCOPE_LENGTH


class WorkerId(NamedTuple):
    host: str
    pid: int
    thread: int
    scope: str | None  # None: an id from a version before scopes

    def __str__(self) -> str:
        return f"{self.label}@{self.scope}" if self.scope else self.label

    @property
    def label(self) -> str:
        """``host:pid:thread``: how log lines name the thread."""
        return f"{self.host}:{self.pid}:{self.thread}"


def this_host() -> str:
    """The hostname as it appears in ids: without ':' or '@' and short enough to fit."""
    host = socket.gethostname().replace(":", "-").replace("@", "-")
    return host[: MAX_LENGTH - _TAIL] or "localhost"


@functools.cache
def this_scope() -> str:
    """This process's boot and pid namespace, hashed: where its pids mean what they say.

    Without Linux's /proc (macOS), the boot time stands in for the boot id and there is a
    single pid namespace.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = str(int(psutil.boot_time()))
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return scope_of(boot, namespace)


def scope_of(boot: str, namespace: int) -> str:
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:SCOPE_LENGTH]


def make(pid: int, thread: int) -> str:
    return str(WorkerId(this_host(), pid, thread, this_scope()))


def parse(worker_id: str) -> WorkerId | None:
    """``None`` for ids this worker did not write (db_worker's random ones, other tools')."""
    base, at, scope = worker_id.rpartition("@")
    if not at:
        base, scope = worker_id, ""
    elif len(scope) != SCOPE_LENGTH or not set(scope) <= set(string.hexdigits):
        return None
    host, _, rest = base.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not pid.isdigit() or not rest.isdigit():
        return None
    return WorkerId(host, int(pid), int(rest), scope or None)


def is_local(worker: WorkerId) -> bool:
    """Whether ``worker``'s pid is a pid of this process's world: same host, boot and pid
    namespace. Only then does "no such pid" mean the worker is dead."""
    return worker.scope == this_scope() and worker.host == this_host()


def label(worker_id: str) -> str:
    """The readable part of a worker id, for log lines."""
    parsed = parse(worker_id)
    return parsed.label if parsed else worker_id
