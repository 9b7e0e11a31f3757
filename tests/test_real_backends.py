"""Real servers and a real task worker on the test Django project, driven by the supervisor."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from helpers import free_port, is_alive, tree, until

from backends.base import Project
from tui.project import Entry, build_entry
from tui.supervisor import State, Supervisor

WORKER = "django_prodserver.backends.django_tasks.DjangoTasksWorker"


def entry(djproject: Path, name: str, backend: str, args: Any) -> Entry:
    project = Project(
        "djproject.settings",
        str(djproject),
        pythonpath=(str(djproject),),
        settings=SimpleNamespace(WSGI_APPLICATION="djproject.wsgi.application"),
    )
    built = build_entry(name, {"BACKEND": backend, "ARGS": args}, project)
    assert built.error is None, built.error
    return built


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def statuses(djproject: Path) -> dict[str, int]:
    db = djproject.parent / "db.sqlite3"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select status, count(*) from django_tasks_database_dbtaskresult group by status"
        ).fetchall()
    return dict(rows)


def enqueue(djproject: Path, code: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", f"from testapp import tasks\n{code}"],
        cwd=djproject,
        check=True,
        capture_output=True,
    )


async def test_gunicorn_serves_counts_its_workers_and_stops_clean(djproject: Path) -> None:
    port = free_port()
    web = entry(
        djproject,
        "web",
        "django_prodserver.backends.gunicorn.GunicornServer",
        {"bind": f"127.0.0.1:{port}", "workers": "2"},
    )
    sup = Supervisor([web], watchdog=False)
    await sup.start_all()
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


async def test_runserver_serves_and_stops_with_its_reloader(djproject: Path) -> None:
    port = free_port()
    dev = entry(djproject, "dev", "backends.runserver.RunServer", {"addrport": f"127.0.0.1:{port}"})
    sup = Supervisor([dev], watchdog=False)
    await sup.start_all()
    await until(lambda: get(f"http://127.0.0.1:{port}/") == "ok", timeout=20, what="HTTP ok")
    pids = tree(sup["dev"].pid or 0)
    assert len(pids) == 2  # the autoreloader and the server it runs
    assert await sup.stop_all()
    assert not any(map(is_alive, pids))


async def test_db_worker_runs_enqueued_tasks(djproject: Path) -> None:
    enqueue(djproject, "for i in range(20): tasks.add.enqueue(i, i)\ntasks.fail.enqueue('boom')")
    assert statuses(djproject) == {"READY": 21}
    worker = entry(djproject, "worker", WORKER, {"queue": "default", "verbosity": "1"})
    sup = Supervisor([worker], watchdog=False)
    await sup.start_all()
    await until(
        lambda: statuses(djproject) == {"SUCCESSFUL": 20, "FAILED": 1}, timeout=30, what="tasks"
    )
    # No per-task log lines asserted: on Django 6 with DEBUG=False db_worker's are dropped
    # (DESIGN.md section 1); the prodserver-tui worker will configure its own logging.
    with sqlite3.connect(djproject.parent / "db.sqlite3") as conn:
        (traceback,) = conn.execute(
            "select traceback from django_tasks_database_dbtaskresult where status = 'FAILED'"
        ).fetchone()
    assert "ValueError: boom" in traceback
    assert await sup.stop_all()
    assert sup["worker"].state is State.STOPPED


async def test_db_worker_finishes_its_task_on_stop(djproject: Path) -> None:
    enqueue(djproject, "tasks.sleep.enqueue(2)")
    worker = entry(djproject, "worker", WORKER, {"queue": "default"})
    sup = Supervisor([worker], watchdog=False)
    await sup.start_all()
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="task running")
    assert await sup.stop_all()  # the task finishes within the grace period: no SIGKILL
    assert statuses(djproject) == {"SUCCESSFUL": 1}
