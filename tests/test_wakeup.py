"""Push wake-up of the task worker: real workers, real PostgreSQL notifications, real doorbells.

Every worker here polls only every 30 s, so a task that starts within seconds of its enqueue
was started by a ring, not by a poll.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil
import pytest
from conftest import POSTGRES
from helpers import WORKER, enqueue, entry, query, statuses, until
from test_taskworker import assert_exactly_once, execute, worker_ids

from backends.taskworker import doorbell
from tui.engine.supervisor import Supervisor

TABLE = "django_tasks_database_dbtaskresult"
SLOW_POLL = {"interval": "30", "safety-interval": "30"}


async def start_worker(supervise, djproject: Path, **args: str) -> Supervisor:  # type: ignore[no-untyped-def]
    sup: Supervisor = await supervise(
        entry(djproject, "worker", WORKER, {"queue": "default", **SLOW_POLL, **args})
    )
    return sup


def lines(sup: Supervisor) -> list[str]:
    return [line.text for line in sup["worker"].ring.since(0)]


def said(sup: Supervisor, words: str) -> int:
    return sum(words in t for t in lines(sup))


def waits(djproject: Path) -> list[float]:
    """Seconds from each finished task's enqueue (or due time) to its start."""
    if os.environ.get("DJPROJECT_PG"):
        sql = (
            f"select extract(epoch from started_at - greatest(enqueued_at, "
            f"case when run_after < '9000-01-01' then run_after else enqueued_at end)) "
            f"from {TABLE} where started_at is not null"
        )
    else:
        sql = (
            f"select (julianday(started_at) - julianday(max(enqueued_at, "
            f"case when run_after < '9000-01-01' then run_after else enqueued_at end))) * 86400 "
            f"from {TABLE} where started_at is not null"
        )
    return [float(w) for (w,) in query(djproject, sql)]


async def ready(sup: Supervisor, mode: str) -> None:
    """The worker listens (and said so after its catch-up claim): from now on only a ring
    starts a task within 30 s."""
    await until(lambda: said(sup, f"wake-up: {mode} ("), timeout=30, what=f"wake-up: {mode}")


def record(ran: Path, token: str, seconds: float = 0) -> str:
    if seconds:
        return f"tasks.record_slowly.enqueue({str(ran)!r}, {token!r}, {seconds})"
    return f"tasks.record.enqueue({str(ran)!r}, {token!r})"


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_a_task_starts_at_its_enqueue_not_at_the_next_poll(
    djproject: Path, supervise, tmp_path: Path
) -> None:
    mode = "notify" if os.environ.get("DJPROJECT_PG") else "doorbell"
    sup = await start_worker(supervise, djproject)
    await ready(sup, mode)
    ran = tmp_path / "ran.txt"
    for i in range(3):  # one transaction each, as web requests enqueue
        enqueue(djproject, record(ran, str(i)))
    # Deferred by 2 s: a timer rings at its time.
    enqueue(
        djproject,
        "from datetime import timedelta\nfrom django.utils import timezone\n"
        f"tasks.record.using(run_after=timezone.now() + timedelta(seconds=2)).enqueue("
        f"{str(ran)!r}, '3')",
    )
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": 4}, timeout=20, what="4 tasks")
    assert_exactly_once(djproject, ran, 4)
    assert max(waits(djproject)) < 10, waits(djproject)  # a poll would have taken 30 s
    assert said(sup, "wake-up: ") == 1, lines(sup)  # said once, never lost
    # what the console shows: this worker process's mode, read back from its line
    worker = sup["worker"].pid and psutil.Process(sup["worker"].pid).children()[0].pid
    view = lambda: sup.view().process("worker").wake_up  # noqa: E731
    await until(lambda: [(w.pid, w.mode) for w in view()] == [(worker, mode)], timeout=10)


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
async def test_rings_while_every_thread_is_busy_and_a_burst_lose_nothing(
    djproject: Path, supervise, tmp_path: Path
) -> None:
    """Rings that find no idle thread are not lost; a burst in one transaction (one ring:
    PostgreSQL folds identical notifications) still reaches every thread of both processes."""
    mode = "notify" if os.environ.get("DJPROJECT_PG") else "doorbell"
    sup = await start_worker(supervise, djproject, processes="2", threads="2")
    await until(lambda: said(sup, f"wake-up: {mode} (") == 2, timeout=30, what="2 listeners")
    ran = tmp_path / "ran.txt"
    enqueue(djproject, "\n".join(record(ran, f"s{i}", 2) for i in range(4)))
    await until(lambda: statuses(djproject).get("RUNNING") == 4, timeout=10, what="4 busy")
    for i in range(5):  # every thread busy: each ring finds none idle
        enqueue(djproject, record(ran, f"q{i}"))
    enqueue(djproject, f"for i in range(2000): tasks.record.enqueue({str(ran)!r}, str(i))")
    total = 4 + 5 + 2000
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": total}, timeout=60, what="all")
    runs = ran.read_text().split()
    assert len(runs) == len(set(runs)) == total  # each ran once
    pids = {ids[0].split(":")[1] for ids in worker_ids(djproject)}
    assert len(pids) == 2  # both processes were woken and claimed


@pytest.mark.parametrize("djproject", [POSTGRES], indirect=True)
async def test_a_killed_listener_is_reestablished_and_a_missing_trigger_is_said(
    djproject: Path, supervise, tmp_path: Path
) -> None:
    sup = await start_worker(supervise, djproject)
    await ready(sup, "notify")
    listeners = (
        "select pg_terminate_backend(pid) from pg_stat_activity "
        f"where datname = '{os.environ['DJPROJECT_PG']}' and query = 'LISTEN prodserver_tui_ready'"
    )
    assert execute(djproject, listeners) == 1
    await until(lambda: said(sup, "wake-up: polling (notify lost: "), timeout=15, what="lost")
    await until(lambda: said(sup, "wake-up: notify (") == 2, timeout=15, what="listening again")
    ran = tmp_path / "ran.txt"
    enqueue(djproject, record(ran, "0"))
    await until(lambda: statuses(djproject) == {"SUCCESSFUL": 1}, timeout=10, what="the task")
    assert max(waits(djproject)) < 10

    execute(djproject, f"drop trigger prodserver_tui_ready on {TABLE}")
    await sup.restart("worker")
    await until(lambda: said(sup, "wake-up: polling (no notify trigger"), timeout=30)
    line = next(t for t in lines(sup) if "no notify trigger" in t)
    assert '"backends.taskworker" to INSTALLED_APPS and run manage.py migrate' in line


def test_a_ring_reaches_live_doorbells_and_clears_a_dead_one(tmp_path: Path) -> None:
    database = str(tmp_path / "db.sqlite3")
    live = doorbell.bind(database)
    folder = Path(live.getsockname()).parent
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "999999999.sock"))
    dead.close()  # a worker killed before it could remove its socket
    doorbell.ring(database, b'{"b": "default", "q": "default", "at": null}')
    assert live.recv(1024) == b'{"b": "default", "q": "default", "at": null}'
    assert sorted(p.name for p in folder.iterdir()) == [Path(live.getsockname()).name]
    doorbell.ring(database, b"x" * (doorbell.LARGEST + 1))  # too long: nobody is rung
    with pytest.raises(BlockingIOError):
        live.recv(4096)
    doorbell.unbind(live)
    assert list(folder.iterdir()) == []
    doorbell.ring(str(tmp_path / "other.sqlite3"), b"{}")  # no worker there: nothing happens
