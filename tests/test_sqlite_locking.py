"""SQLite written by a web server and a worker at once: the finding that says so before anything
locks, and the worker and the suggested OPTIONS that end "database is locked", on real files
and real processes (bench/sqlite_locking.py measures the same at length)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import fixture_argv
from helpers import WORKER, enqueue, entry, statuses, until
from test_diagnostics import check

from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]

RECOMMENDED = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}
TASKS = 60


def sqlite_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "is SQLite" in line]


# -- the finding -------------------------------------------------------------------------------


def test_web_and_worker_on_default_sqlite_settings_get_the_options_to_paste(
    djproject: Path,
) -> None:
    """gunicorn (2 workers) beside a worker on Django's defaults: one warning, with the exact
    OPTIONS; none with them; a file already in WAL mode is read as such (from its header)."""
    code, lines = check(djproject, DJPROJECT_SQLITE_OPTIONS="{}")
    assert code == 0
    assert sqlite_lines(lines) == [
        "warning  project: DATABASES['default'] is SQLite and 3 processes and threads write to "
        'it at once (web 2, worker 1) without transaction_mode "IMMEDIATE" or a busy timeout '
        'of 10 s or more or WAL, so saves and tasks fail with "database is locked" — set '
        "DATABASES['default']['OPTIONS'] = {'transaction_mode': 'IMMEDIATE', 'timeout': 20, "
        "'init_command': 'PRAGMA journal_mode=WAL;'} (Django 5.1 or later); the task worker "
        "does not switch WAL on by itself: it is a mode of the database file, for every program "
        "that opens it, and needs them all on this machine's own disk"
    ]
    assert sqlite_lines(check(djproject, DJPROJECT_SQLITE_OPTIONS=json.dumps(RECOMMENDED))[1]) == []
    with contextlib.closing(sqlite3.connect(djproject.parent / "db.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # the init_command's
    mine = {"timeout": 30, "init_command": "PRAGMA synchronous=NORMAL"}
    assert sqlite_lines(check(djproject, DJPROJECT_SQLITE_OPTIONS=json.dumps(mine))[1]) == [
        "warning  project: DATABASES['default'] is SQLite and 3 processes and threads write to "
        'it at once (web 2, worker 1) without transaction_mode "IMMEDIATE", so saves and tasks '
        "fail with \"database is locked\" — set DATABASES['default']['OPTIONS'] = {'timeout': "
        "30, 'init_command': 'PRAGMA synchronous=NORMAL; PRAGMA journal_mode=WAL;', "
        "'transaction_mode': 'IMMEDIATE'} (Django 5.1 or later)"
    ]


@pytest.mark.parametrize(("threads", "warned"), [("2", True), ("1", False)])
def test_a_worker_alone_is_warned_when_it_has_threads(
    djproject: Path, threads: str, warned: bool
) -> None:
    (djproject / "solo.py").write_text(
        "from djproject.settings import *\n"
        'PRODUCTION_PROCESSES = {"worker": PRODUCTION_PROCESSES["worker"]}\n'
    )
    args = json.dumps({"queue": "default", "threads": threads})
    _, lines = check(
        djproject,
        DJANGO_SETTINGS_MODULE="solo",
        DJPROJECT_WORKER_ARGS=args,
        DJPROJECT_SQLITE_OPTIONS="{}",
    )
    assert bool(sqlite_lines(lines)) == warned, lines


# -- the locking, under a concurrent writer ----------------------------------------------------


async def write_beside_the_worker(
    djproject: Path, supervise: Supervise
) -> tuple[dict[str, int], dict[str, int]]:
    """A writer process and our worker (2 x 2) on the same file, ``TASKS`` read-then-write
    tasks, each with the OPTIONS the test set: (task statuses, the writer's counts)."""
    with contextlib.closing(sqlite3.connect(djproject.parent / "db.sqlite3")) as db:
        db.execute("CREATE TABLE testapp_note (token varchar(100))")
    enqueue(djproject, f"for i in range({TASKS}): tasks.tally.enqueue(str(i), 0.01)")
    writer = subprocess.Popen(
        fixture_argv("sqlite_writer", "0.002"),
        cwd=djproject,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "djproject.settings",
            "PYTHONPATH": str(djproject),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        args = {"queue": "default", "interval": "0.1", "processes": "2", "threads": "2"}
        sup = await supervise(entry(djproject, "worker", WORKER, args))
        finished = lambda: sum(statuses(djproject).get(s, 0) for s in ("SUCCESSFUL", "FAILED"))  # noqa: E731
        await until(lambda: finished() == TASKS, timeout=60, what=f"{TASKS} tasks finished")
        await sup.stop_all()
        writer.send_signal(signal.SIGTERM)
        said, _ = writer.communicate(timeout=20)
    finally:
        writer.kill()
        writer.wait()
    return statuses(djproject), json.loads(said.splitlines()[-1])


async def test_our_worker_takes_the_write_lock_at_begin_whatever_the_settings(
    djproject: Path, supervise: Supervise, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django's defaults: our worker's tasks never meet "database is locked" (a few in each run
    did before it forced IMMEDIATE), while the writer does (so the contention was real)."""
    monkeypatch.setenv("DJPROJECT_SQLITE_OPTIONS", "{}")
    tasks, writer = await write_beside_the_worker(djproject, supervise)
    assert tasks == {"SUCCESSFUL": TASKS}
    assert writer["locked"] > 0, writer


async def test_the_suggested_options_end_the_locking(
    djproject: Path, supervise: Supervise, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJPROJECT_SQLITE_OPTIONS", json.dumps(RECOMMENDED))
    tasks, writer = await write_beside_the_worker(djproject, supervise)
    assert tasks == {"SUCCESSFUL": TASKS}
    assert writer["locked"] == 0 and writer["requests"] > 100, writer
