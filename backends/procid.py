"""Which process a pid names: the pid and the process's start, which no clock step can move.

A pid alone may be reused once its process is gone, so a process is known by its pid *and*
its start. psutil's ``create_time()`` will not do for the start: it is the boot time plus the
start in clock ticks, and Linux derives the boot time (/proc/stat ``btime``) from the wall
clock, so a step of the clock moves every process's create time at once (after a +2 s step the
watchdog took every child for gone, and stuck-task recovery took live workers for newer
programs). Field 22 of /proc/PID/stat, the start in clock ticks since boot, never changes:
(pid, start) names one process for as long as the machine is up. One caveat: a time namespace
shows those ticks shifted by its own offset, so starts are compared only between processes of
one time namespace (the task worker's id scope includes it; the watchdog is the console's
child). Without /proc (macOS), psutil's create time in centiseconds stands in: the best there
is.

Used by the console's watchdog and by the task worker's stuck-task recovery, so it imports
nothing but the standard library (psutil only where there is no /proc).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """What the kernel says about one process."""

    ppid: int
    pgid: int
    start: int  # clock ticks since boot (centiseconds since the epoch without /proc)
    zombie: bool


def stat(pid: int) -> Stat | None:
    """``pid``'s process now; None if there is none (or it may not be inspected)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rpartition(b")")[2].split()  # the name may hold anything
        return Stat(int(fields[1]), int(fields[2]), int(fields[19]), fields[0] == b"Z")
    except (OSError, IndexError, ValueError):
        if os.path.isdir("/proc/self"):
            return None  # gone (or hidden from us: hidepid)
    import psutil  # only where there is no /proc: the watchdog stays small

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            zombie = proc.status() == psutil.STATUS_ZOMBIE
            return Stat(proc.ppid(), os.getpgid(pid), round(proc.create_time() * 100), zombie)
    except (psutil.Error, OSError):
        return None


def started(pid: int) -> int | None:
    """``pid``'s start (see `Stat.start`); None if it is gone."""
    found = stat(pid)
    return None if found is None else found.start
