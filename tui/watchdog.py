"""Stops every child and grandchild if the console dies without doing so (even by SIGKILL).

A parent-death signal only reaches direct children (a gunicorn master's workers outlived it
by seconds in a trial), so a separate process holds the read end of a pipe from the console.
The console writes ``pid create_time stop_signal grace stop_group`` for every child it starts;
this process keeps each child's set of descendants fresh, and when the pipe closes (the console
is gone, however it went) it stops every child the way the console would have: its stop signal
to its group (or to the main process alone, when the backend says so, as Celery's does), each
process once, and SIGKILL to whatever of that child's tree is left when its own grace period
is over. Trees are kept apart so that a stubborn child's short grace never cuts short a task
worker that is still draining.
Run as ``python -m tui.watchdog`` in its own session so a terminal's signals do not reach it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass

import psutil

from tui.sampler import children_map, descendant_pids

Key = tuple[int, float]  # pid, create_time: a pid alone may be reused by an unrelated program


@dataclass(frozen=True)
class Stop:
    """How the console would stop one child: what it sends first and how long it waits."""

    signal: int
    grace: float
    group: bool  # the signal goes to the whole process group, not only the main process


def _alive(key: Key) -> psutil.Process | None:
    """A zombie is not alive: with the console gone, its orphans wait for init to reap them,
    and some inits (a container's, this project's CI VM's) take a second or more."""
    try:
        proc = psutil.Process(key[0])
        if proc.create_time() != key[1] or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def _refresh(trees: dict[Key, set[Key]]) -> None:
    """Remember descendants now, because once the console dies they are re-parented away."""
    children = children_map()
    for root, seen in trees.items():
        for pid in descendant_pids(root[0], children):
            with contextlib.suppress(psutil.Error):
                seen.add((pid, psutil.Process(pid).create_time()))


def _stop(roots: dict[Key, Stop], trees: dict[Key, set[Key]], orphans: set[Key]) -> None:
    _refresh(trees)
    started = time.monotonic()
    for root, how in roots.items():
        _first_signal(root, how, trees[root])
    pending = dict(roots)
    while pending:
        time.sleep(0.05)
        for root, how in list(pending.items()):
            if not _tree_alive(root, trees[root]):
                del pending[root]
            elif time.monotonic() - started > how.grace:
                _kill(root, trees[root])
                del pending[root]
    for seen in trees.values():  # stragglers that outlived the SIGKILL of their group
        _kill(None, seen)
    _kill(None, orphans)


def _first_signal(root: Key, how: Stop, seen: set[Key]) -> None:
    """Each process gets the stop signal once: a second copy makes some servers (granian's
    workers) deadlock in their own handler, and makes others (Ctrl-C twice) abort."""
    if not how.group:
        _send(root, how.signal)
        return
    with contextlib.suppress(OSError):  # also reaches members we never saw
        os.killpg(root[0], how.signal)
    for key in seen:
        with contextlib.suppress(OSError):
            if os.getpgid(key[0]) != root[0]:  # it left the group: the killpg missed it
                _send(key, how.signal)


def _kill(root: Key | None, seen: set[Key]) -> None:
    if root is not None:
        with contextlib.suppress(OSError):
            os.killpg(root[0], signal.SIGKILL)
        _send(root, signal.SIGKILL)
    for key in seen:
        _send(key, signal.SIGKILL)


def _send(key: Key, sig: int) -> None:
    proc = _alive(key)
    if proc is not None:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _tree_alive(root: Key, seen: set[Key]) -> bool:
    if _alive(root) or any(_alive(key) for key in seen):
        return True
    try:
        os.killpg(root[0], 0)
    except OSError:
        return False
    return _live_member(root[0])  # someone we never saw, or only zombies


def _live_member(pgid: int) -> bool:
    if not os.path.isdir("/proc/self"):  # no way to tell a zombie: assume the worst
        return True
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
    return False


def _parse(line: bytes) -> tuple[Key, Stop]:
    pid, ctime, stop_signal, grace, *group = line.split()
    return (int(pid), float(ctime)), Stop(int(stop_signal), float(grace), group != [b"0"])


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    roots: dict[Key, Stop] = {}
    trees: dict[Key, set[Key]] = {}  # root -> its descendants seen so far
    orphans: set[Key] = set()  # descendants of ended roots that the console left alive
    pending = b""
    stdin = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([stdin], [], [], 1.0)
        if ready:
            data = os.read(stdin, 65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):  # a garbled line must not end the guard
                    root, how = _parse(line)
                    roots[root] = how
                    trees[root] = set()
        ended = [r for r in roots if not _alive(r)]
        for root in ended:  # the console kills what an ended child leaves; if it missed one
            del roots[root]
            orphans |= trees.pop(root)
        trees = {r: {k for k in seen if _alive(k)} for r, seen in trees.items()}
        orphans = {k for k in orphans if _alive(k)}
        _refresh(trees)
    _stop(roots, trees, orphans)


if __name__ == "__main__":
    main()
