"""How a task worker process says how it hears of new tasks: one line of its output.

Each worker process prints ``<host>:<pid> wake-up: <mode> (<detail>)`` at start and whenever
its mode changes (a lost LISTEN connection falls back to polling, and comes back), e.g.
``web-01:4251 wake-up: notify (LISTEN prodserver_tui_ready, safety poll every 5 s)``. The
console reads it back (`parse`) to show each worker's mode in its task panel. Both sides
import this module, so the words cannot drift apart.

Any task can print anything, so a line is a report only in exactly this shape: the label
``host:pid`` as its first word, a known mode, the detail in parentheses, and short. The
console also keeps a report only while its pid is alive in the entry's process tree.
"""

from __future__ import annotations

from typing import NamedTuple

MARK = " wake-up: "  # between the process's label and its mode
NOTIFY = "notify"  # PostgreSQL LISTEN/NOTIFY
DOORBELL = "doorbell"  # SQLite: a datagram from producers on this machine
POLLING = "polling"  # neither: the database is asked at an interval
MODES = (NOTIFY, DOORBELL, POLLING)
LONGEST = 1024  # characters: a report is short; a longer line is someone else's
_LONGEST_PID = 10  # digits


class Report(NamedTuple):
    pid: int
    mode: str


def line(label: str, mode: str, detail: str) -> str:
    """The report of the process labelled ``label`` (``ids`` ``host:pid``), to print as it is
    on stdout: not through the logging formatter, whose thread name would come first.

    The detail may quote an error: it is made one line and cut so the report fits `LONGEST`.
    """
    if mode not in MODES:
        raise ValueError(f"wake-up mode must be one of {', '.join(MODES)}, got {mode!r}")
    if _pid(label) is None:
        raise ValueError(f"a wake-up report's label must be host:pid, got {label!r}")
    head = f"{label}{MARK}{mode} ("
    room = LONGEST - len(head) - 1
    detail = " ".join(detail.split())
    if len(detail) > room:
        detail = detail[: room - 1] + "…"
    return f"{head}{detail})"


def parse(text: str) -> Report | None:
    """The pid and mode a report says; None for any other line, however close."""
    if len(text) > LONGEST or MARK not in text:
        return None
    label, _, said = text.partition(MARK)
    pid = _pid(label)
    mode, space, detail = said.partition(" ")
    if pid is None or mode not in MODES or not space:
        return None
    if len(detail) < 2 or detail[0] != "(" or detail[-1] != ")":
        return None
    return Report(pid, mode)


def _pid(label: str) -> int | None:
    """The pid of a ``host:pid`` label (the host may hold ':'); None when it is not one."""
    host, colon, pid = label.rpartition(":")
    if not colon or not host or not host.isprintable() or any(c.isspace() for c in host):
        return None
    # int() takes "²" and "٣": only ASCII digits are a pid
    if not (pid.isascii() and pid.isdigit()) or len(pid) > _LONGEST_PID or int(pid) == 0:
        return None
    return int(pid)
