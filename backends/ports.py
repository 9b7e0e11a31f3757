"""Who listens on a TCP address: the port check names another program on an entry's port, and
the readiness probe counts an answer only when the entry's own processes hold the socket.

Asking costs: each read of the kernel's socket table (/proc/net/tcp, tcp6) walks all of it
whatever the filter (about 5 ms each on the 2-core test machine with 270 sockets), and listing
every process's sockets (``psutil.net_connections``) also reads every /proc/PID/fd (19 ms with
130 processes). So an entry's own processes are asked first, one at a time and root first
(gunicorn's master holds the socket its workers inherit): a process without sockets costs one
directory listing and no table read. The whole machine is listed only to name someone else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psutil

from backends.base import one_line

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*", ""})
HIDDEN = "another program (its owner is hidden from this user)"


def overlap(wanted: str, taken: str) -> bool:
    """Whether binding ``wanted`` collides with a socket listening on ``taken``."""
    return wanted in WILDCARD_HOSTS or taken in WILDCARD_HOSTS or wanted == taken


def listening(kind: str = "tcp") -> list[Any]:
    """Every listening socket of this host; empty when this user may not list them (macOS)."""
    try:
        found = psutil.net_connections(kind=kind)
    except (psutil.Error, OSError):
        return []
    return [c for c in found if c.status == psutil.CONN_LISTEN]


def held_by(pids: Iterable[int], host: str, port: int) -> bool:
    """Whether one of ``pids`` listens where a connection to ``host``:``port`` (an address
    that answered, not a name) lands: on that address, or on every address of its family.
    IPv4 may land on an IPv6 socket bound to ``::``, so its table is read when the IPv4 one
    had nothing."""
    kinds = ("tcp6",) if ":" in host else ("tcp4", "tcp6")
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for kind in kinds:
                if any(_lands(c, host, port) for c in process.net_connections(kind=kind)):
                    return True
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return False


def holder(host: str, port: int) -> int | None:
    """The pid of a process listening where ``host``:``port`` lands; None when none is
    found or its owner is hidden from this user."""
    kind = "tcp6" if ":" in host else "tcp"
    for conn in listening(kind):
        if _lands(conn, host, port) and conn.pid is not None:
            return int(conn.pid)
    return None


def describe(pid: int | None) -> str:
    """``python3 (pid 4242: python3 -m http.server 8000)``: whose socket, for a message. The
    name and command line are another program's text: one printable line each, cut short."""
    if pid is None:
        return HIDDEN
    try:
        process = psutil.Process(pid)
        name = process.name()
        command = " ".join(process.cmdline())
    except psutil.Error:
        return f"pid {pid}"
    name = one_line(name, 40)
    return f"{name} (pid {pid}: {one_line(command, 120)})" if command else f"{name} (pid {pid})"


def _lands(conn: Any, host: str, port: int) -> bool:
    """A psutil connection (a process's or the host's) listening where host:port lands."""
    if conn.status != psutil.CONN_LISTEN or not conn.laddr:
        return False
    ip, taken = conn.laddr[:2]
    return taken == port and (ip in WILDCARD_HOSTS or ip in (host, f"::ffff:{host}"))
