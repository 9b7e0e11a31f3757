"""Worker ids ``host:pid:thread@scope/start``: which thread of which process ran a task.

A pid names one process only within one pid namespace of one boot of one machine: two
containers with the same hostname have their own pid 7, and so have two boots of one host. The
``scope`` is a short hash of the boot id and the pid and time namespaces, so a RUNNING task
whose worker pid is dead is judged stuck only by a worker that sees the same pids (`is_local`);
tasks of other hosts, containers or boots are recognisably not ours. ``start`` is the worker
process's start in clock ticks since boot (`backends.procid`): within one scope, a live process
with that pid *and* that start is the worker, whatever the wall clock did since, and any other
start means the pid was reused (the time namespace is in the scope because it shifts the ticks
it shows). The log prefix is the readable part, ``host:pid:thread`` (`label`): every line of
one machine would carry the same scope.

Older ids parse too: ``host:pid:thread@scope`` (no start: the pid alone is known) and
``host:pid:thread`` (no scope: never local, since the namespace they came from is unknown).
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

from backends import procid

MAX_LENGTH = 64
SCOPE_LENGTH = 8  # hex digits: two live namespaces share a scope with odds of 1 in 4 billion
#: Clock ticks: 317 years of uptime at Linux's 100 a second (without /proc, centiseconds
#: since 1970: until 2286).
START_DIGITS = 12
# The longest pid Linux hands out, a generous thread number, the scope and the start.
_TAIL = len(":4194304:9999@/") + SCOPE_LENGTH + START_DIGITS


class WorkerId(NamedTuple):
    host: str
    pid: int
    thread: int
    scope: str | None  # None: an id from a version before scopes
    start: int | None = None  # the process's start (`procid.started`); None in older ids

    def __str__(self) -> str:
        if self.scope is None:
            return self.label
        return f"{self.label}@{self.scope}" + ("" if self.start is None else f"/{self.start}")

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
    """This process's boot, pid namespace and time namespace, hashed: where its pids and
    their starts mean what they say.

    The boot id, unlike the boot time, stays put when the clock is stepped. Without Linux's
    /proc (macOS), the boot time stands in for it, and there is one namespace of each kind;
    there a step gives processes started after it another scope, so tasks of workers from
    before it look foreign: never recovered by mistake, only not recovered.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = str(int(psutil.boot_time()))
    return scope_of(boot, _namespace("pid"), _namespace("time"))


def _namespace(kind: str) -> int:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:  # no /proc, or a kernel without this kind of namespace
        return 0


def scope_of(boot: str, pid_namespace: int, time_namespace: int) -> str:
    key = f"{boot}/{pid_namespace}/{time_namespace}"
    return hashlib.sha256(key.encode()).hexdigest()[:SCOPE_LENGTH]


def make(pid: int, thread: int) -> str:
    """The id of thread ``thread`` of process ``pid`` (without a start if ``pid`` is gone)."""
    return str(WorkerId(this_host(), pid, thread, this_scope(), procid.started(pid)))


def parse(worker_id: str) -> WorkerId | None:
    """``None`` for ids this worker did not write (db_worker's random ones, other tools')."""
    base, at, tail = worker_id.rpartition("@")
    if not at:
        base, tail = worker_id, ""
    scope, slash, start = tail.partition("/")
    if at and (len(scope) != SCOPE_LENGTH or not set(scope) <= set(string.hexdigits)):
        return None
    if slash and not _number(start):
        return None
    host, _, rest = base.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not host or not _number(pid) or not _number(rest):
        return None
    return WorkerId(host, int(pid), int(rest), scope or None, int(start) if slash else None)


def _number(text: str) -> bool:
    """Digits int() takes: ids come from the database, and "²".isdigit() is true."""
    return text.isascii() and text.isdigit()


def is_local(worker: WorkerId) -> bool:
    """Whether ``worker``'s pid is a pid of this process's world: same host, boot and pid
    namespace. Only then does "no such pid" mean the worker is dead."""
    return worker.scope == this_scope() and worker.host == this_host()


def label(worker_id: str) -> str:
    """The readable part of a worker id (host:pid:thread), for log lines and the task panel:
    its scope and start time only tell this program whether the worker is alive."""
    parsed = parse(worker_id)
    return parsed.label if parsed else worker_id
