"""A deterministic console: real entries and a real supervisor, frozen in chosen states.

Snapshot tests and screenshots of states that are hard to catch live (a crash loop, a config
error, a queue backlog) need the same picture on every run: nothing is started, the clock is
fixed, and every number shown is set here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

from backends.base import Project
from backends.taskstats import Failure, QueueStats, Snapshot, WorkerCounts
from backends.wakeup_line import NOTIFY, line
from tui.app import ConsoleApp
from tui.engine.child import Exit, State
from tui.engine.local import LocalEngine
from tui.engine.output import Line
from tui.engine.sampler import Usage
from tui.engine.supervisor import Supervisor
from tui.project import build_entry

NOW = 1_800_000_000.0
MB = 1024 * 1024

ENTRIES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {"bind": "127.0.0.1:8000", "workers": "4"},
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"processes": "2", "threads": "2", "queue": "default"},
    },
    "css": {"BACKEND": "backends.command.Command", "ARGS": ["true"]},
    "api": {"BACKEND": "django_prodserver.backends.uvicorn.UvicornServer"},
}


def usage(cpu: float, rss_mb: int, processes: int, children: int) -> Usage:
    return Usage(cpu, rss_mb * MB, processes, children, processes * 2, frozenset())


def scene() -> ConsoleApp:
    project = Project(
        "mysite.settings",
        "/srv/mysite",
        settings=SimpleNamespace(WSGI_APPLICATION="mysite.wsgi.application"),
    )
    sup = Supervisor(
        [build_entry(name, spec, project) for name, spec in ENTRIES.items()], watchdog=False
    )
    web, worker, css, api = sup.children.values()
    for child, pid, up in ((web, 4242, 754), (worker, 4250, 3720)):
        child.state, child.pid, child.started_at = State.RUNNING, pid, NOW - up
    web.usage = usage(3.2, 212, 5, 4)
    web.ready_after, web.healthy = 0.8, True
    worker.usage = replace(usage(41.5, 180, 3, 2), pids=frozenset({4250, 4251, 4252}))
    worker.tasks = WorkerCounts(running=3, succeeded_1m=171, failed_1m=2)
    css.state, css.restarts, css.next_try_at = State.BACKOFF, 3, 0.0
    css.last_exit = Exit(code=1, signal=None, forced=False)
    web.ring.append("sys", ["-- starting: pid 4242", "-- running: pid 4242"])
    web.ring.append(
        "err",
        [
            "[INFO] Starting gunicorn 23.0.0",
            "[INFO] Listening at: http://127.0.0.1:8000 (4242)",
            *(f"[INFO] Booting worker with pid: {4243 + i}" for i in range(4)),
        ],
    )
    web.ring.append(
        "out",
        [f'127.0.0.1 - - "GET /orders/{i} HTTP/1.1" \x1b[32m200\x1b[0m 5120' for i in range(30)],
    )
    assert web.events is not None
    web.events.count(  # in time order, as a log is: 144 requests over the last 48 s
        [
            Line(i, "out", f'"GET / HTTP/1.1" {s} 5', NOW - 48 + i / 3)
            for i, s in enumerate([200] * 140 + [404] * 3 + [500])
        ]
    )
    said = [line(f"host:{pid}", NOTIFY, "LISTEN prodserver_tui_ready") for pid in (4251, 4252)]
    worker.ring.append("out", said)
    worker.wake_ups.hear(said, worker.usage.pids)
    worker.ring.append(
        "out",
        [
            f"host:{4251 + i % 2}:{1 + i % 2} done 0.0{i % 9}s shop.tasks.send_receipt {i:04d}"
            for i in range(40)
        ],
    )
    worker.ring.append(
        "out", ["host:4251:2 FAILED 1.20s shop.tasks.charge: CardError: declined (0041)"]
    )
    css.ring.append("err", ["Error: Cannot find module 'tailwindcss'"])
    css.ring.append("sys", ["-- backoff: exited with code 1, restarting in 0 s"])
    api.ring.append("sys", [f"-- config-error: {api.error}"])
    when = datetime.fromtimestamp(NOW, UTC)
    sup.stats = Snapshot(
        taken_at=when,
        queues=[
            QueueStats(
                "default", "default", 12, 3, 3, 171, 2, 48210, 97, 2.9, 2.85, 0.4, 1.9, 0.08, 0.6
            ),
            QueueStats(
                "default", "emails", 0, 0, 0, 14, 0, 3120, 1, 0.3, 0.23, 0.2, 0.5, 0.21, 0.3
            ),
        ],
        failures=[
            Failure(
                "0041",
                "shop.tasks.charge",
                "default",
                "shop.errors.CardError",
                "CardError: declined",
                when,
                "host:4251:2",
            )
        ],
        by_pid={},
        oldest_ready_wait=1.4,
    )
    return ConsoleApp(
        LocalEngine(sup, "mysite.settings", clock=lambda: NOW),
        clock=lambda: NOW,
        start=False,
        host="shop-01",
        info_every=3600,
    )
