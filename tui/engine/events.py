"""Events per second counted from a process's own log lines: requests, finished tasks.

A backend names the pattern (``Backend.events_pattern``): its first group is the kind of
event (an HTTP status class, a Celery task outcome). The raw lines stay in the log untouched;
this only counts them, in one-second buckets over the last minute, for the pane.
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque

from tui.engine.output import Line

WINDOW = 60


class EventCounter:
    def __init__(self, pattern: str, ignore: str | None = None) -> None:
        self.pattern = re.compile(pattern)
        # lines that match but are no event: the console's own health probe in an access log
        self.ignore = re.compile(ignore) if ignore else None
        self._buckets: deque[tuple[int, Counter[str]]] = deque(maxlen=WINDOW + 1)

    def count(self, lines: list[Line]) -> None:
        for line in lines:
            match = self.pattern.search(line.text)
            if match and not (self.ignore and self.ignore.search(line.text)):
                self._bucket(int(line.time))[match.group(1)] += 1

    def _bucket(self, second: int) -> Counter[str]:
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, Counter()))
        return self._buckets[-1][1]

    def per_second(self, over: int = 10, now: float | None = None) -> float:
        since = int(now if now is not None else time.time()) - over
        return sum(c.total() for s, c in self._buckets if s > since) / over

    def by_kind(self, now: float | None = None) -> dict[str, int]:
        """Events per kind over the last minute, e.g. {"2": 120, "4": 3} for status classes."""
        since = int(now if now is not None else time.time()) - WINDOW
        totals: Counter[str] = Counter()
        for second, counts in self._buckets:
            if second > since:
                totals.update(counts)
        return dict(sorted(totals.items()))
