"""How each process of a task worker hears of new tasks, from the reports in its output.

Every worker process says its wake-up mode at start and when it changes
(`backends.wakeup_line`). Reports are kept per pid; one counts only while its pid is in the
entry's process tree as last sampled, so a worker process that exited drops out with it.
A task can print a report too, under any pid: so reports are kept for at most `KEPT` pids,
and those of pids the sampler did not find are forgotten after each sample.
"""

from __future__ import annotations

import time
from collections.abc import Set

from backends import wakeup_line
from tui.engine.views import WakeView

KEPT = 256  # pids: more worker processes than any entry runs


class WakeUps:
    def __init__(self) -> None:
        self._modes: dict[int, tuple[str, float]] = {}  # pid -> (mode, time.monotonic() heard)

    def hear(self, lines: list[str], tree: Set[int]) -> None:
        """Take the reports among an entry's lines; ``tree``: its pids at the last sample."""
        if wakeup_line.MARK not in "\n".join(lines):
            return
        now = time.monotonic()
        for line in lines:
            report = wakeup_line.parse(line)
            if report is None:
                continue
            if report.pid not in self._modes and len(self._modes) >= KEPT:
                # Full, of pids that cannot all be workers: those not found in the tree go.
                self._modes = {p: m for p, m in self._modes.items() if p in tree}
                if len(self._modes) >= KEPT:
                    continue
            self._modes[report.pid] = (report.mode, now)

    def sampled(self, tree: Set[int], began: float) -> None:
        """A sample that began at ``began`` (``time.monotonic()``) found ``tree``: reports of
        pids not in it, heard before it began, are of processes gone (or never there). One
        heard meanwhile may be of a process newer than the sample: the next one decides."""
        if any(p not in tree and heard < began for p, (_, heard) in self._modes.items()):
            self._modes = {
                p: (mode, heard)
                for p, (mode, heard) in self._modes.items()
                if p in tree or heard >= began
            }

    def forget(self) -> None:
        """The entry's main process exited: its workers went with it."""
        self._modes = {}

    def views(self, tree: Set[int]) -> tuple[WakeView, ...]:
        """The reports of processes in ``tree``, by pid."""
        return tuple(
            WakeView(pid, mode) for pid, (mode, _) in sorted(self._modes.items()) if pid in tree
        )
