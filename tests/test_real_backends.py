"""Real servers and a real task worker on the test Django project, driven by the supervisor."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from helpers import (
    WORKER,
    enqueue,
    entry,
    free_port,
    get,
    gunicorn,
    is_alive,
    statuses,
    tree,
    until,
)

from backends.taskworker import ids
from tui.engine.child import State
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]


async def test_gunicorn_serves_counts_its_workers_and_stops_clean(
    djproject: Path, supervise: Supervise
) -> None:
    web, port = gunicorn(djproject, workers=2)
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: get(f"http://127.0.0.1:{port}/") == "ok", timeout=20, what="HTTP ok")
    await until(
        lambda: child.usage is not None and child.usage.processes == 3,
        timeout=10,
        what="master + 2 workers sampled",
    )
    pids = tree(child.pid or 0)
    assert len(pids) == 3
    assert await sup.stop_all()
    assert not any(map(is_alive, pids))
    assert get(f"http://127.0.0.1:{port}/") is None


async def test_runserver_serves_and_stops_with_its_reloader(
    djproject: Path, supervise: Supervise
) -> None:
    port = free_port()
    dev = entry(djproject, "dev", "backends.runserver.RunServer", {"addrport": f"127.0.0.1:{port}"})
    sup = await supervise(dev)
    await until(lambda: get(f"http://127.0.0.1:{port}/") == "ok", timeout=20, what="HTTP ok")
    pids = tree(sup["dev"].pid or 0)
    assert len(pids) == 2  # the autoreloader and the server it runs
    assert await sup.stop_all()
    assert not any(map(is_alive, pids))


async def test_task_worker_runs_enqueued_tasks(djproject: Path, supervise: Supervise) -> None:
    enqueue(djproject, "for i in range(20): tasks.add.enqueue(i, i)\ntasks.fail.enqueue('boom')")
    assert statuses(djproject) == {"READY": 21}
    worker = entry(djproject, "worker", WORKER, {"queue": "default", "verbosity": "1"})
    sup = await supervise(worker)
    await until(
        lambda: statuses(djproject) == {"SUCCESSFUL": 20, "FAILED": 1}, timeout=30, what="tasks"
    )

    def lines() -> list[str]:
        return [line.text for line in sup["worker"].ring.since(0)]

    # One line per finished task, naming the thread that ran it (output trails the database);
    # the duration before the task, the id last (a narrow pane cuts the end of a line off).
    thread, uuid = rf"{re.escape(ids.this_host())}:\d+:\d+", "[0-9a-f-]{36}"
    done = re.compile(rf"{thread} done \d+\.\d\ds testapp\.tasks\.add {uuid}")
    failed = re.compile(
        rf"{thread} FAILED \d+\.\d\ds testapp\.tasks\.fail: ValueError: boom \({uuid}\)"
    )
    await until(lambda: sum(bool(done.fullmatch(t)) for t in lines()) == 20, what="lines")
    assert any(failed.fullmatch(t) for t in lines()), lines()
    # The master's own lines carry the same host:pid prefix, and count in good English.
    master = f"{ids.this_host()}:{sup['worker'].pid}"
    assert f"{master} master up: 1 process x 1 thread, queues default" in lines()
    assert any(
        re.fullmatch(rf"{master} started worker process \d+ with 1 thread", t) for t in lines()
    )
    with sqlite3.connect(djproject.parent / "db.sqlite3") as conn:
        (traceback,) = conn.execute(
            "select traceback from django_tasks_database_dbtaskresult where status = 'FAILED'"
        ).fetchone()
    assert "ValueError: boom" in traceback
    assert await sup.stop_all()
    assert sup["worker"].state is State.STOPPED


async def test_task_worker_finishes_its_task_on_stop(djproject: Path, supervise: Supervise) -> None:
    enqueue(djproject, "tasks.sleep.enqueue(2)")
    worker = entry(djproject, "worker", WORKER, {"queue": "default"})
    sup = await supervise(worker)
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="task running")
    assert await sup.stop_all()  # the task finishes within the grace period: no SIGKILL
    assert statuses(djproject) == {"SUCCESSFUL": 1}


async def test_gunicorn_access_log_becomes_request_rates(
    djproject: Path, supervise: Supervise
) -> None:
    web, port = gunicorn(djproject, workers=1)
    web.backend.options["access-logfile"] = "-"  # type: ignore[union-attr]
    sup = await supervise(web)
    await until(lambda: sup["web"].state is State.RUNNING, timeout=20, what="ready")
    for path in ["/"] * 5 + ["/missing"] * 2:
        get(f"http://127.0.0.1:{port}{path}")
    counter = sup["web"].events
    assert counter is not None
    # ours, counted by class; the readiness probes are not requests
    await until(lambda: counter.by_kind().get("4", 0) >= 2, what="404s counted")
    assert counter.by_kind() == {"2": 5, "4": 2}
    assert counter.per_second(over=60) > 0
    raw = [line.text for line in sup["web"].ring.since(0)]
    assert any('"GET /missing HTTP/1.1" 404' in text for text in raw)  # the log is untouched
