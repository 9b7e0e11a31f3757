"""Kills every child and grandchild if the console dies without stopping them (even by SIGKILL).

A parent-death signal only reaches direct children (a gunicorn master's workers outlived it
by seconds in a trial), so a separate process holds the read end of a pipe from the console.
The console writes ``pid create_time stop_signal grace`` for every child it starts; this
process keeps the set of their descendants fresh, and when the pipe closes (the console is
gone, however it went) it stops them the way the console would have: each group gets its
stop signal (a task worker drains), and whatever is left when its grace period is over gets
SIGKILL.
Run as ``python -m tui.watchdog`` in its own session so a terminal's signals do not reach it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

import psutil

from tui.sampler import children_map, descendant_pids

Key = tuple[int, float]  # pid, create_time: a pid alone may be reused by an unrelated program


def _alive(key: Key) -> psutil.Process | None:
    try:
        proc = psutil.Process(key[0])
        return proc if proc.create_time() == key[1] else None
    except psutil.Error:
        return None


def _refresh(roots: set[Key], seen: set[Key]) -> None:
    """Remember descendants now, because once the console dies they are re-parented away."""
    children = children_map()
    for root in roots:
        for pid in descendant_pids(root[0], children):
            with contextlib.suppress(psutil.Error):
                seen.add((pid, psutil.Process(pid).create_time()))


def _stop(roots: dict[Key, tuple[int, float]], seen: set[Key]) -> None:
    _refresh(set(roots), seen)
    started = time.monotonic()
    for key, (sig, _grace) in roots.items():
        _signal(key, sig, seen)
    pending = dict(roots)
    while pending:
        time.sleep(0.05)
        for key, (_sig, grace) in list(pending.items()):
            tree = [key, *(s for s in seen if _alive(s))]
            if not any(_alive(k) for k in tree) and not _group_alive(key[0]):
                del pending[key]
            elif time.monotonic() - started > grace:
                _signal(key, signal.SIGKILL, seen)
                del pending[key]
    for key in seen:  # stragglers that left every group
        proc = _alive(key)
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _signal(root: Key, sig: int, seen: set[Key]) -> None:
    # Children lead their own process group: this reaches members we never saw too.
    with contextlib.suppress(OSError):
        os.killpg(root[0], sig)
    for key in (root, *seen):
        proc = _alive(key)
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    roots: dict[Key, tuple[int, float]] = {}  # -> (stop signal, grace)
    seen: set[Key] = set()
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
                pid, ctime, stop_signal, grace = line.split()
                roots[(int(pid), float(ctime))] = (int(stop_signal), float(grace))
        roots = {r: how for r, how in roots.items() if _alive(r)}
        _refresh(set(roots), seen)
        seen = {s for s in seen if _alive(s)}
    _stop(roots, seen)


if __name__ == "__main__":
    main()
