"""Kills every child and grandchild if the console dies without stopping them (even by SIGKILL).

A parent-death signal only reaches direct children (a gunicorn master's workers outlived it
by seconds in a trial), so a separate process holds the read end of a pipe from the console.
The console writes ``pid create_time`` for every child it starts; this process keeps the set
of their descendants fresh, and when the pipe closes (the console is gone, however it went)
it sends SIGTERM to every recorded group and process, then SIGKILL to what is still there.
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

Key = tuple[int, float]  # pid, create_time: a pid alone may be reused by an unrelated program


def _alive(key: Key) -> psutil.Process | None:
    try:
        proc = psutil.Process(key[0])
        return proc if proc.create_time() == key[1] else None
    except psutil.Error:
        return None


def _refresh(roots: set[Key], seen: set[Key]) -> None:
    """Remember descendants now, because once the console dies they are re-parented away."""
    for root in list(roots):
        proc = _alive(root)
        if proc is None:
            continue
        try:
            for child in proc.children(recursive=True):
                seen.add((child.pid, child.create_time()))
        except psutil.Error:
            pass


def _kill(roots: set[Key], seen: set[Key], grace: float) -> None:
    _refresh(roots, seen)
    everyone = roots | seen
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in roots:
            # Children lead their own process group: this reaches members we never saw too.
            with contextlib.suppress(OSError):
                os.killpg(pid, sig)
        for key in everyone:
            proc = _alive(key)
            if proc is not None:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(k) for k in everyone):
            time.sleep(0.05)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    roots: set[Key] = set()
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
                pid, ctime = line.split()
                roots.add((int(pid), float(ctime)))
        roots = {r for r in roots if _alive(r)}
        _refresh(roots, seen)
        seen = {s for s in seen if _alive(s)}
    _kill(roots, seen, grace=3.0)


if __name__ == "__main__":
    main()
