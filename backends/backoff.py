"""Doubling delays between attempts: the one backoff rule of the console and the task worker.

The console's restart of a crashed entry, the task worker's respawn of a crashed worker
process, its retried recovery of stuck tasks and a worker thread's wait for a database that
went away all follow it: the first failure waits ``first``, each further one twice as long,
up to ``cap``; a success (or a long healthy run) starts over. It lives in ``backends`` because
``backends`` never imports ``tui``.
"""

from __future__ import annotations


class Backoff:
    """The delay before the next attempt; ``reset`` after a success or a long healthy run."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.delay = 0.0  # the last delay given, 0 when none since the last reset

    def next(self) -> float:
        self.delay = min(self.delay * 2, self.cap) if self.delay else self.first
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0
