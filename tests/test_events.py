"""Log lines counted into events: access logs by status class, Celery task outcomes."""

from __future__ import annotations

from backends.base import ACCESS_LOG
from tui.engine.events import EventCounter
from tui.engine.output import Line
from tui.engine.probe import request_line

GUNICORN = '127.0.0.1 - - [27/Nov/2026:09:31:25 +0000] "GET /a HTTP/1.1" {} 2 "-" "curl/8"'
UVICORN = 'INFO:     127.0.0.1:51234 - "POST /b HTTP/1.1" {} OK'


def lines(template: str, statuses: list[int], at: float) -> list[Line]:
    return [Line(i, "out", template.format(s), at) for i, s in enumerate(statuses)]


def test_both_formats_are_counted_by_class_and_rate() -> None:
    counter = EventCounter(ACCESS_LOG)
    counter.count(lines(GUNICORN, [200, 200, 404, 500], at=1000.2))
    counter.count(lines(UVICORN, [201, 302, 503], at=1005.7))
    counter.count([Line(9, "out", "[INFO] Booting worker with pid: 7 200", 1005.9)])
    assert counter.by_kind(now=1006) == {"2": 3, "3": 1, "4": 1, "5": 2}
    assert counter.per_second(over=10, now=1006) == 0.7


def test_the_probes_own_requests_are_not_counted_in_any_servers_format() -> None:
    """Its request line, as gunicorn, uvicorn, granian and runserver log it (granian without the
    query string and the minor version); the same path with HEAD or over HTTP/1.1, or another
    path, is traffic."""
    counter = EventCounter(ACCESS_LOG, ignore=request_line("/up?deep=1"))
    probe = [
        '127.0.0.1 - - [06/Dec/2026:07:24:47 +0000] "GET /up?deep=1 HTTP/1.0" 200 0 "-" "-"',
        'INFO:     127.0.0.1:5123 - "GET /up?deep=1 HTTP/1.0" 200 OK',
        '[2026-12-06 07:24:47 +0000] 127.0.0.1 - "GET /up HTTP/1" 200 1.2',
        '[06/Dec/2026 07:24:47] "GET /up?deep=1 HTTP/1.0" 404 0',
    ]
    traffic = [
        '127.0.0.1 - - [06/Dec/2026:07:24:47 +0000] "GET /up?deep=1 HTTP/1.1" 200 9 "-" "-"',
        '127.0.0.1 - - [06/Dec/2026:07:24:47 +0000] "HEAD /up?deep=1 HTTP/1.0" 200 0 "-" "-"',
        'INFO:     127.0.0.1:5123 - "GET /upper HTTP/1.0" 200 OK',
        '[2026-12-06 07:24:47 +0000] 127.0.0.1 - "GET /up HTTP/2" 200 1.2',
    ]
    counter.count([Line(i, "out", t, 1000.5) for i, t in enumerate(probe + traffic)])
    assert counter.by_kind(now=1001) == {"2": 4}


def test_old_requests_leave_the_window() -> None:
    counter = EventCounter(ACCESS_LOG)
    counter.count(lines(GUNICORN, [200] * 6, at=1000.0))
    counter.count(lines(GUNICORN, [404], at=1070.0))
    assert counter.by_kind(now=1071) == {"4": 1}


def test_celery_task_outcomes_are_counted() -> None:
    from backends.celery import CeleryWorker

    pattern = CeleryWorker.events_pattern(None)  # type: ignore[arg-type]
    counter = EventCounter(pattern)
    text = [
        "[2026-11-27 10:00:00,001: INFO/ForkPoolWorker-1] Task app.add[1f-2] succeeded in 0.1s: 4",
        "[2026-11-27 10:00:00,002: ERROR/ForkPoolWorker-2] Task app.fail[3a-4] raised unexpected",
        "[2026-11-27 10:00:00,003: INFO/MainProcess] Task app.add[5b-6] received",
    ]
    counter.count([Line(i, "err", t, 2000.5) for i, t in enumerate(text)])
    assert counter.by_kind(now=2001) == {"raised": 1, "succeeded": 1}
