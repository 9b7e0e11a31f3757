"""Access-log lines of gunicorn and uvicorn counted into rates and status classes."""

from __future__ import annotations

from tui.output import Line
from tui.requests import RequestCounter

GUNICORN = '127.0.0.1 - - [27/Nov/2026:09:31:25 +0000] "GET /a HTTP/1.1" {} 2 "-" "curl/8"'
UVICORN = 'INFO:     127.0.0.1:51234 - "POST /b HTTP/1.1" {} OK'


def lines(template: str, statuses: list[int], at: float) -> list[Line]:
    return [Line(i, "out", template.format(s), at) for i, s in enumerate(statuses)]


def test_both_formats_are_counted_by_class_and_rate() -> None:
    counter = RequestCounter()
    counter.count(lines(GUNICORN, [200, 200, 404, 500], at=1000.2))
    counter.count(lines(UVICORN, [201, 302, 503], at=1005.7))
    counter.count([Line(9, "out", "[INFO] Booting worker with pid: 7 200", 1005.9)])
    assert counter.by_class(now=1006) == {"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 2}
    assert counter.per_second(over=10, now=1006) == 0.7


def test_old_requests_leave_the_window() -> None:
    counter = RequestCounter()
    counter.count(lines(GUNICORN, [200] * 6, at=1000.0))
    counter.count(lines(GUNICORN, [404], at=1070.0))
    assert counter.by_class(now=1071) == {"4xx": 1}
