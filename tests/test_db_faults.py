"""Database faults while task workers run: PostgreSQL stopped and started, SQLite locked.

What must hold: the workers say "database unavailable: ...; retrying in N s" (one line, no
traceback) and back off; the console's statistics carry an error instead of dying; both recover
by themselves once the database is back; no task is lost or run twice, including the tasks that
were running when the database went away (their outcome is saved when it returns, see
``backends.taskworker.worker.TaskLoop``); the master and its worker processes never restart.

PostgreSQL faults run on a private cluster this module makes with ``initdb`` on a free port,
never on the machine's shared server. Each scenario runs in a fresh process (this file, run as
a script), because the supervisor's statistics loop reads the project's database through
Django, whose settings load once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import WORKER, enqueue, entry, query, run_json, statuses, until
from pgcluster import Cluster, private_cluster
from test_recovery import run as run_django

from backends.taskworker import ids
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TABLE = "django_tasks_database_dbtaskresult"
THREADS = 3  # per worker process, 2 processes: SLOW of the threads are busy, 2 idle ones poll
SLOW = 4  # tasks running when the fault starts ...
SLOW_S = 5.0  # ... for this long
BEFORE, DURING, AFTER = 20, 10, 20  # quick tasks enqueued before, during and after the fault
OUTAGE = 3.0  # seconds PostgreSQL stays down, at least
LOCK = 10.0  # seconds another process holds SQLite's exclusive lock, at least
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


# --- a private PostgreSQL cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[Cluster]:
    """A running private cluster for this module, removed afterwards."""
    with private_cluster("dbfaults-pg-") as cluster:
        yield cluster


@pytest.fixture
def on_cluster(pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Point the test project at a fresh database of the private cluster (before djproject
    migrates it: request this fixture first)."""
    pg_cluster.execute("CREATE DATABASE faults")
    monkeypatch.setenv("DJPROJECT_PG", "faults")
    monkeypatch.setenv("DJPROJECT_PG_PORT", str(pg_cluster.port))
    yield pg_cluster
    with contextlib.suppress(RuntimeError):  # a test that failed mid-outage left it stopped
        pg_cluster.start()
    pg_cluster.execute("DROP DATABASE IF EXISTS faults WITH (FORCE)")


# --- the tests ------------------------------------------------------------------------------


def test_postgres_stopped_and_started(on_cluster: Cluster, djproject: Path) -> None:
    # djproject's "sqlite" parameter is overridden by DJPROJECT_PG: it migrated the cluster's db.
    seen = scenario_in_fresh_process(djproject, "postgresql", root=str(on_cluster.root))
    assert seen["during"].startswith("refused"), seen["during"]  # the queue itself was down
    assert any("is unreachable" in e for e in seen["stats_errors"]), seen["stats_errors"]
    check_outcome(djproject, seen, during=0)
    lost = [t for t in seen["lines"] if "wake-up: polling (notify lost: " in t]
    assert len(lost) == 2, seen["lines"]  # each listener said its loss once, not per attempt


def test_sqlite_locked_by_another_writer(djproject: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJPROJECT_SQLITE_TIMEOUT", "1")  # the workers' lock wait runs out
    seen = scenario_in_fresh_process(djproject, "sqlite")
    assert seen["during"] == "accepted", seen["during"]  # waited for the lock, then enqueued
    assert any("database is locked" in e for e in seen["stats_errors"]), seen["stats_errors"]
    check_outcome(djproject, seen, during=DURING)


async def test_master_started_while_postgres_is_down(
    on_cluster: Cluster, djproject: Path, supervise: Supervise
) -> None:
    """The master's start-up recovery meets a dead database: one line, retried until it
    answers; then the task a dead worker left RUNNING is requeued and runs once."""
    ran = djproject.parent / "ran.txt"
    enqueue(djproject, f"tasks.record.enqueue({str(ran)!r}, 'orphan')")
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    orphaned_by = json.dumps([ids.make(dead.pid, 1)])
    on_cluster.execute(
        f"update {TABLE} set status = 'RUNNING', started_at = now(), worker_ids = %s::jsonb",
        orphaned_by,
        dbname="faults",
    )
    on_cluster.stop()
    sup = await supervise(entry(djproject, "worker", WORKER, {"queue": "default"}))
    lines = lambda: [line.text for line in sup["worker"].ring.since(0)]  # noqa: E731
    refused = "could not recover stuck tasks at start-up: "
    await until(lambda: any(refused in t for t in lines()), timeout=30, what="refused recovery")
    await until(lambda: any("database unavailable: " in t for t in lines()), timeout=30)
    on_cluster.start()
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": 1}, timeout=60, what="the task")
    # The requeue wakes a worker at its commit: the task can be done before the master's
    # line about it has reached the console.
    requeued = "requeued 1 stuck task at start-up"
    await until(lambda: any(requeued in t for t in lines()), timeout=10, what="the requeue's line")
    assert ran.read_text().split() == ["orphan"]
    assert not [t for t in lines() if "Traceback" in t]
    await sup.stop_all()


async def test_a_task_that_uses_the_database_during_an_outage_fails_once(
    on_cluster: Cluster, djproject: Path, supervise: Supervise
) -> None:
    """A task's own query meets the outage: the task failed (its code raised, and the worker
    cannot know whether running it again is safe), and that outcome is saved once, when the
    database is back; the row does not stay RUNNING and the task does not run again."""
    ran = djproject.parent / "ran.txt"
    enqueue(djproject, f"tasks.use_database.enqueue({str(ran)!r}, 'own', 120)")
    args = {"queue": "default", "interval": "0.2"}
    sup = await supervise(entry(djproject, "worker", WORKER, args))
    lines = lambda: [line.text for line in sup["worker"].ring.since(0)]  # noqa: E731
    notes = "select count(*) from testapp_note"
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=30, what="running")
    await until(lambda: ran.exists() and query(djproject, notes)[0][0] > 0, timeout=30)
    (task_id,) = running(djproject)
    on_cluster.stop()
    waiting = f"saving the result of task {task_id}: "  # it failed, and cannot save that yet
    await until(lambda: any(waiting in t for t in lines()), timeout=30, what="a waiting save")
    on_cluster.start()
    await until(lambda: statuses(djproject) == {"FAILED": 1}, timeout=60, what="saved FAILED")
    ((exception, traceback, worker_ids_),) = query(
        djproject, f"select exception_class_path, traceback, worker_ids from {TABLE}"
    )
    assert exception == "django.db.utils.OperationalError", traceback
    assert len(json.loads(worker_ids_) if isinstance(worker_ids_, str) else worker_ids_) == 1
    assert ran.read_text().split() == ["own"]
    failed = lambda: [t for t in lines() if " FAILED " in t and task_id in t]  # noqa: E731
    await until(failed, timeout=10, what="the FAILED line")  # printed after the save
    assert "OperationalError" in failed()[0], failed()
    assert sum(f"saved the result of task {task_id}" in t for t in lines()) == 1
    assert not [t for t in lines() if "Traceback" in t]
    enqueue(djproject, f"tasks.record.enqueue({str(ran)!r}, 'after')")  # the worker goes on
    await until(lambda: statuses(djproject) == {"FAILED": 1, "SUCCESSFUL": 1}, timeout=30)
    await sup.stop_all()


def test_a_claim_cut_off_by_an_outage_is_released_by_its_own_thread_only(
    djproject: Path,
) -> None:
    """A claim whose commit the outage cut off may have been written; the thread that made it
    requeues what is still RUNNING under its id, and nothing of other workers'."""
    me, other = ids.make(os.getpid(), 1), ids.make(os.getpid(), 2)
    body = """
    cut_off = running(P["me"])
    theirs = running(P["other"])
    retried = running(P["me"])  # mine once, then requeued and claimed by another thread
    DBTaskResult.objects.get(id=retried).claim(P["other"])
    released = recovery.release_claims(P["me"])
    out = {"released": released, **{k: row(v) for k, v in
           {"cut_off": cut_off, "theirs": theirs, "retried": retried}.items()}}
    """
    out, _ = run_django(djproject, body, me=me, other=other)
    assert out["released"] == 1
    assert out["cut_off"]["status"] == "READY" and out["cut_off"]["started_at"] is None
    assert out["theirs"]["status"] == out["retried"]["status"] == "RUNNING"


async def test_the_worker_pane_says_what_is_wrong_with_the_database() -> None:
    """Not "waiting for statistics": the error, cut to the pane's width, in place of numbers."""
    from scene import scene

    app = scene()
    error = "database 'default' is unreachable (connection refused): check DATABASES['default']"
    assert app.engine.supervisor.stats is not None
    app.engine.supervisor.stats = dataclasses.replace(
        app.engine.supervisor.stats, queues=[], error=error
    )
    app.engine.supervisor["worker"].tasks = None  # what the statistics loop sets on an error
    async with app.run_test(size=(100, 40)):
        (pane,) = [p for p in app.panes if p.child.name == "worker"]
        shown, width = str(pane.stats_text()).splitlines()[1], pane.width
    assert shown.startswith("tasks  database 'default' is unreachable")
    assert len(shown) <= width < len("tasks  " + error)


def scenario_in_fresh_process(djproject: Path, kind: str, **fault: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), str(djproject)]),
        "DJANGO_SETTINGS_MODULE": "djproject.settings",
    }
    argv = [
        sys.executable,
        __file__,
        json.dumps({"project": str(djproject), "kind": kind, **fault}),
    ]
    seen: dict[str, Any] = run_json(argv, djproject, env, timeout=150)
    print(f"\n{kind}: {json.dumps(seen['numbers'])}")  # shown with pytest -s
    return seen


def check_outcome(djproject: Path, seen: dict[str, Any], during: int) -> None:
    """Every task ran exactly once and finished; workers said what was wrong, in one line."""
    tokens = Counter((djproject.parent / "ran.txt").read_text().split())
    expected = SLOW + BEFORE + during + AFTER
    assert [t for t, n in tokens.items() if n > 1] == []  # nothing ran twice
    assert len(tokens) == expected  # nothing was lost
    assert statuses(djproject) == {"SUCCESSFUL": expected}
    claims = [
        json.loads(w) if isinstance(w, str) else w
        for (w,) in query(djproject, f"select worker_ids from {TABLE}")
    ]
    assert all(len(c) == 1 for c in claims)  # each claimed once: none was requeued
    assert seen["in_flight"]  # the fault really hit running tasks, and they were kept:
    assert set(seen["in_flight"]) <= unsaved(seen["lines"])
    lines = seen["lines"]
    assert any("database unavailable: " in t and "retrying in" in t for t in lines)  # claiming
    assert not still_waiting(lines)  # and each thread that waited to claim is back
    assert sum("saved the result of task" in t for t in lines) >= len(seen["in_flight"])
    assert not [t for t in lines if "Traceback" in t or "crashed" in t or "died" in t]
    assert seen["master_same"] and seen["workers_same"]  # nothing restarted
    assert seen["stats_recovered"]


# --- the scenario, in a fresh process ----------------------------------------------------------


async def scenario(config: dict[str, Any]) -> dict[str, Any]:
    project = Path(config["project"])
    ran = str(project.parent / "ran.txt")
    args = {"queue": "default", "interval": "0.2", "processes": "2", "threads": str(THREADS)}
    sup = Supervisor([entry(project, "worker", WORKER, args)], watchdog=False, stats_every=0.3)
    errors: set[str] = set()

    async def watch_stats() -> None:
        while True:
            if sup.stats is not None and sup.stats.error:
                errors.add(sup.stats.error)
            await asyncio.sleep(0.05)

    def lines() -> list[str]:
        return [line.text for line in sup["worker"].ring.since(0)]

    watcher = asyncio.get_running_loop().create_task(watch_stats())
    await sup.start_all()
    try:
        await until(lambda: len(processes(sup)) == 2, timeout=30, what="2 worker processes")
        before = processes(sup)
        master = sup["worker"].pid
        slow = f"for i in range({SLOW}): tasks.record_slowly.enqueue({ran!r}, f's{{i}}', {SLOW_S})"
        enqueue(project, slow)
        enqueue(project, f"for i in range({BEFORE}): tasks.record.enqueue({ran!r}, f'b{{i}}')")
        await until(lambda: running(project), timeout=30, what="a slow task running")
        with contextlib.suppress(AssertionError):  # more in flight is better, one is enough
            await until(lambda: len(running(project)) == SLOW, timeout=SLOW_S / 3)
        in_flight, done_before = running(project), count(project, "SUCCESSFUL")

        fault = Fault.make(config, project)
        fault.begin()
        during = asyncio.get_running_loop().run_in_executor(None, try_enqueue, project, ran)
        await until(lambda: errors, timeout=30, what="an error in the statistics")
        # A task that finished between the snapshot and the fault (a loaded machine) saved
        # normally and said "done"; one that meets the fault says it could not save, and says
        # "done" only once it has, after the fault.
        await until(
            lambda: in_flight <= unsaved(lines()) | finished(lines()),
            timeout=60,
            what="in-flight tasks to finish",
        )
        in_flight &= unsaved(lines())
        await fault.end(during)
        back = time.monotonic()
        await until(lambda: count(project, "SUCCESSFUL") > done_before, timeout=60, what="a task")
        first_finished = time.monotonic() - back
        if config["kind"] == "postgresql":  # each process's listener is back: 2 at start, 2 now
            listening = lambda: sum("wake-up: notify (" in t for t in lines()) == 4  # noqa: E731
            await until(listening, timeout=30, what="both listeners back")
        listening_back = time.monotonic() - back
        during_outcome = await during
        await until(lambda: sup.stats is not None and not sup.stats.error, timeout=30)
        stats_back = time.monotonic() - back

        enqueue(project, f"for i in range({AFTER}): tasks.record.enqueue({ran!r}, f'a{{i}}')")
        total = SLOW + BEFORE + AFTER + (DURING if during_outcome == "accepted" else 0)
        await until(lambda: count(project, "SUCCESSFUL") == total, timeout=60, what="all tasks")
        logged = lambda: len(finished(lines())) == total  # noqa: E731
        await until(logged, timeout=30, what="every task's log line")
        # A thread that was waiting to claim notices the database within its backoff (<= 10 s).
        await until(lambda: not still_waiting(lines()), timeout=30, what="every thread back")
        return {
            "during": during_outcome,
            "stats_errors": sorted(errors),
            "stats_recovered": sup.stats is not None and not sup.stats.error,
            "lines": lines(),
            "in_flight": sorted(in_flight),
            "master_same": sup["worker"].pid == master and sup["worker"].restarts == 0,
            "workers_same": processes(sup) == before,
            "numbers": {
                "in_flight": len(in_flight),
                "first_task_finished_after_back_s": round(first_finished, 2),
                "stats_clear_after_back_s": round(stats_back, 2),
                "listening_after_back_s": round(listening_back, 2),
                "retry_lines": sum("database unavailable" in t for t in lines()),
            },
        }
    finally:
        watcher.cancel()
        sup.kill_all()
        await sup.stop_all()


class Fault:
    """How a scenario breaks the database, and mends it once the scenario has seen enough."""

    @staticmethod
    def make(config: dict[str, Any], project: Path) -> Fault:
        if config["kind"] == "postgresql":
            port = int(os.environ["DJPROJECT_PG_PORT"])
            return PostgresDown(Cluster(Path(config["root"]), port))
        return SqliteLocked(project.parent / "db.sqlite3")

    def begin(self) -> None:
        raise NotImplementedError

    async def end(self, during: asyncio.Future[str]) -> None:
        raise NotImplementedError


class PostgresDown(Fault):
    """Stopped with ``-m immediate`` (a crash, to clients), started again on the same port."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def begin(self) -> None:
        self.started = time.monotonic()
        self.cluster.stop("immediate")

    async def end(self, during: asyncio.Future[str]) -> None:
        await during  # the enqueue attempt must meet the outage, whatever the machine's speed
        await asyncio.sleep(max(0.0, self.started + OUTAGE - time.monotonic()))
        self.cluster.start()


class SqliteLocked(Fault):
    """Another process holds ``BEGIN EXCLUSIVE`` on the file for LOCK seconds (or longer, until
    the in-flight tasks have met the lock)."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def begin(self) -> None:
        self.started = time.monotonic()
        self.locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(self.db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.locker.stdout is not None and self.locker.stdout.readline() == "locked\n"

    async def end(self, during: asyncio.Future[str]) -> None:
        await asyncio.sleep(max(0.0, self.started + LOCK - time.monotonic()))
        self.locker.communicate("commit\n", timeout=30)


def try_enqueue(project: Path, ran: str) -> str:
    """Enqueue during the fault, waiting for a lock as long as an ordinary writer would."""
    try:
        code = f"for i in range({DURING}): tasks.record.enqueue({ran!r}, f'd{{i}}')"
        enqueue(project, code, DJPROJECT_SQLITE_TIMEOUT="30")
    except subprocess.CalledProcessError as e:
        return f"refused: {e.stderr.decode().strip().splitlines()[-1]}"
    return "accepted"


def processes(sup: Any) -> list[int]:
    pid = sup["worker"].pid
    try:
        return sorted(p.pid for p in psutil.Process(pid).children()) if pid else []
    except psutil.NoSuchProcess:
        return []


def running(project: Path) -> set[str]:
    """Ids of RUNNING tasks, dashed as the worker logs them (SQLite stores bare hex)."""
    rows = query(project, f"select id from {TABLE} where status = 'RUNNING'")
    return {str(uuid.UUID(str(i))) for (i,) in rows}


def unsaved(lines: list[str]) -> set[str]:
    """Tasks whose worker said it could not save their result (yet)."""
    marker = "saving the result of task "
    return {t.partition(marker)[2].partition(":")[0] for t in lines if marker in t}


def finished(lines: list[str]) -> set[str]:
    """Tasks whose worker said "done" (the id is the line's last word)."""
    return {t.split()[-1] for t in lines if t.split()[1:2] == ["done"]}


def still_waiting(lines: list[str]) -> set[str]:
    """Worker threads (by their id, the first word) that waited to claim and are not back."""
    waited = {t.split()[0] for t in lines if " database unavailable: " in t}
    back = {t.split()[0] for t in lines if " database back after " in t and t.endswith(" s")}
    return waited - back


def count(project: Path, status: str) -> int:
    return int(query(project, f"select count(*) from {TABLE} where status = ?", status)[0][0])


if __name__ == "__main__":
    print(json.dumps(asyncio.run(scenario(json.loads(sys.argv[1])))))
