"""Requests per second and status classes, read from a web server's access log lines.

gunicorn (``127.0.0.1 - - [...] "GET / HTTP/1.1" 200 2 ...``) and uvicorn
(``127.0.0.1:5000 - "GET / HTTP/1.1" 200 OK``) both put the status right after the quoted
request line, so one pattern serves both. The raw lines stay in the log untouched; this only
counts them, in one-second buckets over the last minute.
"""

from __future__ import annotations

import re
import time
from collections import deque

from tui.output import Line

ACCESS = re.compile(r'"[A-Z]+ \S+ HTTP/\d(?:\.\d)?" ([1-5])\d\d\b')
WINDOW = 60


class RequestCounter:
    def __init__(self) -> None:
        self._buckets: deque[tuple[int, list[int]]] = deque(maxlen=WINDOW + 1)

    def count(self, lines: list[Line]) -> None:
        for line in lines:
            match = ACCESS.search(line.text)
            if match:
                self._bucket(int(line.time))[int(match.group(1)) - 1] += 1

    def _bucket(self, second: int) -> list[int]:
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, [0, 0, 0, 0, 0]))
        return self._buckets[-1][1]

    def per_second(self, over: int = 10, now: float | None = None) -> float:
        since = int(now if now is not None else time.time()) - over
        return sum(sum(c) for s, c in self._buckets if s > since) / over

    def by_class(self, now: float | None = None) -> dict[str, int]:
        """Requests per status class over the last minute: {"2xx": 120, "4xx": 3, ...}."""
        since = int(now if now is not None else time.time()) - WINDOW
        totals = [0] * 5
        for second, counts in self._buckets:
            if second > since:
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
        return {f"{i + 1}xx": n for i, n in enumerate(totals) if n}
