"""The task worker: processes x threads, exactly-once, live scaling, drain, crash recovery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from conftest import POSTGRES
from helpers import WORKER, enqueue, entry, query, statuses, until, worker_process

from backends.taskworker import ids
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
RunWorker = Callable[..., Awaitable[Supervisor]]

TABLE = "django_tasks_database_dbtaskresult"


def tokens(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def enqueue_records(djproject: Path, n: int, start: int = 0) -> Path:
    out = djproject.parent / "ran.txt"
    enqueue(
        djproject,
        f"for i in range({start}, {start + n}): tasks.record.enqueue({str(out)!r}, str(i))",
    )
    return out


def worker_ids(djproject: Path) -> list[list[str]]:
    """Each row's worker ids (SQLite hands back JSON text, PostgreSQL a list already)."""
    rows = query(djproject, f"select worker_ids from {TABLE}")
    return [ids_ if isinstance(ids_, list) else json.loads(ids_) for (ids_,) in rows]


@pytest.fixture
def run_worker(djproject: Path, supervise: Supervise) -> Callable[..., Awaitable[Supervisor]]:
    async def run(**args: object) -> Supervisor:
        args = {"queue": "default", "interval": "0.1", **args}
        return await supervise(entry(djproject, "worker", WORKER, args))

    return run


def execute(djproject: Path, sql: str) -> int:
    """Write to the test project's database directly; how many rows changed."""
    pg = os.environ.get("DJPROJECT_PG")
    if pg:
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=pg) as conn:
            return conn.execute(sql).rowcount  # type: ignore[arg-type]
    with sqlite3.connect(djproject.parent / "db.sqlite3", timeout=20) as conn:
        return conn.execute(sql).rowcount


def workers_now(sup: Supervisor) -> list[psutil.Process]:
    """The real worker processes under the master."""
    pid = sup["worker"].pid
    return psutil.Process(pid).children() if pid else []


def assert_exactly_once(djproject: Path, ran: Path, n: int) -> None:
    counts = tokens(ran)
    assert sorted(counts, key=int) == [str(i) for i in range(n)]
    assert set(counts.values()) == {1}, [t for t, c in counts.items() if c > 1]
    assert statuses(djproject) == {"SUCCESSFUL": n}
    assert all(len(w) == 1 for w in worker_ids(djproject))  # claimed once each


@pytest.mark.parametrize(("processes", "threads"), [(1, 1), (1, 4), (3, 2)])
@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_every_task_runs_exactly_once(
    djproject: Path, processes: int, threads: int, run_worker: RunWorker
) -> None:
    ran = enqueue_records(djproject, 300)
    sup = await run_worker(processes=str(processes), threads=str(threads))
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": 300}, timeout=60, what="300 tasks")
    assert await sup.stop_all()
    assert_exactly_once(djproject, ran, 300)
    used = {ids.parse(w[0]) for w in worker_ids(djproject)}
    assert all(u is not None and u.host == ids.this_host() for u in used)
    if processes * threads > 1:
        assert len(used) > 1  # the work really was spread


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_scaling_live_loses_and_doubles_nothing(
    djproject: Path, run_worker: RunWorker
) -> None:
    ran = enqueue_records(djproject, 2000)
    sup = await run_worker()
    done = lambda: statuses(djproject).get("SUCCESSFUL", 0)  # noqa: E731
    await until(lambda: done() > 50, timeout=30, what="work under way")

    await sup.scale("worker", "threads", 8)
    await until(
        lambda: all(p.num_threads() >= 8 for p in workers_now(sup)), what="8 worker threads"
    )
    await sup.scale("worker", "processes", 3)
    await until(lambda: len(workers_now(sup)) == 3, what="3 worker processes")
    await until(lambda: all(p.num_threads() >= 8 for p in workers_now(sup)), what="8 threads each")
    await sup.scale("worker", "threads", 1)
    await sup.scale("worker", "processes", 1)
    await until(lambda: len(workers_now(sup)) == 1, timeout=20, what="back to 1 process")
    await until(lambda: done() == 2000, timeout=90, what="2000 tasks")
    assert await sup.stop_all()
    assert_exactly_once(djproject, ran, 2000)
    # Which process wins SQLite's lock is luck, so the spread of work is not asserted here;
    # the real process and thread counts were, above.
    assert all(ids.parse(w[0]) for w in worker_ids(djproject))
    assert sup["worker"].entry.backend.scale == {"processes": 1, "threads": 1}  # type: ignore[union-attr]


async def test_scale_sticks_across_restart(djproject: Path, run_worker: RunWorker) -> None:
    sup = await run_worker()
    await sup.scale("worker", "processes", 2)
    await until(lambda: len(workers_now(sup)) == 2, what="2 processes")
    await sup.restart("worker")
    await until(lambda: len(workers_now(sup)) == 2, what="2 processes after restart")
    backend = sup["worker"].entry.backend
    assert backend is not None and backend.configured == {"processes": 1, "threads": 1}
    await sup.stop_all()


async def test_stop_lets_a_running_task_finish(djproject: Path, run_worker: RunWorker) -> None:
    enqueue(djproject, "tasks.sleep.enqueue(5)")
    sup = await run_worker(threads="2")
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="running")
    assert await sup.stop_all()  # drained, not killed
    assert statuses(djproject) == {"SUCCESSFUL": 1}


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_a_killed_process_has_its_task_requeued_and_finished(
    djproject: Path, run_worker: RunWorker
) -> None:
    enqueue(djproject, "tasks.sleep.enqueue(3)")
    sup = await run_worker()
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="running")
    (replica,) = workers_now(sup)
    os.kill(replica.pid, signal.SIGKILL)
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": 1}, timeout=30, what="rerun")
    (ran_by,) = worker_ids(djproject)
    assert len(ran_by) == 2 and ids.parse(ran_by[0]).pid == replica.pid  # type: ignore[union-attr]
    lines = [line.text for line in sup["worker"].ring.since(0)]
    assert any(f"worker process {replica.pid} died (killed by SIGKILL)" in t for t in lines)
    assert any("requeued 1 stuck task" in t for t in lines)
    await sup.stop_all()


async def test_on_crash_fail_marks_the_task_failed(djproject: Path, run_worker: RunWorker) -> None:
    enqueue(djproject, "tasks.sleep.enqueue(3)")
    sup = await run_worker(on_crash="fail")
    await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="running")
    os.kill(workers_now(sup)[0].pid, signal.SIGKILL)
    await until(lambda: statuses(djproject) == {"FAILED": 1}, timeout=20, what="failed")
    ((traceback,),) = query(djproject, f"select traceback from {TABLE}")
    assert "WorkerDied" in traceback
    await sup.stop_all()


async def test_a_failing_task_is_recorded_with_its_traceback(
    djproject: Path, run_worker: RunWorker
) -> None:
    enqueue(djproject, "tasks.fail.enqueue('kaput')")
    sup = await run_worker()
    await until(lambda: statuses(djproject) == {"FAILED": 1}, timeout=20, what="failed")
    ((exc, traceback),) = query(djproject, f"select exception_class_path, traceback from {TABLE}")
    assert exc == "builtins.ValueError" and "ValueError: kaput" in traceback
    await sup.stop_all()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"threads": "0"}, "worker: ARGS 'threads' must be a positive integer, got '0'"),
        ({"threads": "x"}, "worker: ARGS 'threads' must be a positive integer, got 'x'"),
        ({"queue_nme": "a"}, "worker: unrecognized arguments: --queue-nme=a; see: python -m"),
        ({"verbosity": "7"}, "worker: argument --verbosity/-v: invalid _verbosity value: '7'"),
        ({"on_crash": "panic"}, "worker: argument --on-crash: invalid choice: 'panic'"),
    ],
)
def test_bad_args_are_one_clear_line(djproject: Path, args: dict[str, str], expected: str) -> None:
    from backends.base import Project
    from tui.project import build_entry

    built = build_entry(
        "worker", {"BACKEND": WORKER, "ARGS": args}, Project("s", str(djproject), settings=None)
    )
    assert built.error is not None and built.error.startswith(expected), built.error
    assert "\n" not in built.error


def test_seed_configs_validate_unchanged(djproject: Path) -> None:
    from backends.base import Project
    from tui.project import build_entry

    project = Project("s", str(djproject), settings=None)
    for args in ({"processes": "4", "threads": "1"}, {"processes": "2", "threads": "2"}):
        built = build_entry("worker", {"BACKEND": WORKER, "ARGS": args}, project)
        assert built.error is None
        argv = built.launch().argv
        assert argv[1:3] == ("-m", "backends.taskworker")
        assert f"--processes={args['processes']}" in argv and f"--threads={args['threads']}" in argv


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_a_task_requeued_while_it_ran_keeps_its_new_state(djproject: Path) -> None:
    """The worker saves an outcome only to a row still RUNNING under its own claim: a task
    requeued meanwhile (recovery, or by hand) is left READY for its next run, not finished."""
    enqueue(djproject, "tasks.sleep.enqueue(4)")
    args = {"queue": "default", "interval": "0.1", "batch": None, "max_tasks": "1"}
    proc = await worker_process(djproject, args)  # one task, then it exits
    try:
        await until(lambda: statuses(djproject) == {"RUNNING": 1}, timeout=20, what="running")
        # What recovery.requeue writes, straight away (a Django process takes seconds to start).
        requeue = f"update {TABLE} set status = 'READY', started_at = null where status = 'RUNNING'"
        assert execute(djproject, requeue) == 1
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    ((status, worker_ids_, finished, returned),) = query(
        djproject, f"select status, worker_ids, finished_at, return_value from {TABLE}"
    )
    assert (status, finished, returned) == ("READY", None, None)
    assert len(json.loads(worker_ids_) if isinstance(worker_ids_, str) else worker_ids_) == 1
    text = out.decode()
    assert "was requeued or changed by someone else while it ran" in text, text
