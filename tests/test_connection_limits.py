"""A 4 x 8 task worker on a PostgreSQL server with ``max_connections = 15``.

Before: 15 threads held every slot for good (the workers connect as the superuser postgres, so
the 3 slots reserved for an administrator went too), 17 threads logged "too many clients"
every 10 s each, an administrator's psql was locked out, and the advice was "check that the
server is running". What must hold: ``--check`` and the running console say the arithmetic
(processes x threads + the console vs max_connections - reserved, and what to do); idle worker
threads give their connections back, so psql gets in within seconds; the refusals are said
about once a minute per process, not per thread and attempt; every task runs exactly once.

A private cluster (never the shared server's settings), made once for the module.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import enqueue, migrated_copy
from pgcluster import Cluster, private_cluster

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SLOTS = 15  # max_connections of the private cluster; PostgreSQL reserves 3 for superusers
TASKS = 40
BUSY = 0.5
RECORD = f"tasks.record_slowly.enqueue({{ran!r}}, str(i), {BUSY})"
WORKER_ARGS = {"queue": "default", "processes": "4", "threads": "8"}


@pytest.fixture(scope="module")
def full() -> Iterator[tuple[Cluster, Path]]:
    """A private cluster with 15 slots and a migrated copy of the test project on it, plus a
    role without SUPERUSER; the project connects as the superuser postgres unless told."""
    with private_cluster("connlimit-pg-", f"max_connections = {SLOTS}\n") as cluster:
        cluster.execute("CREATE DATABASE limits")
        cluster.execute("CREATE ROLE app LOGIN")
        cluster.execute("ALTER DATABASE limits OWNER TO app")  # its tables: app's, migrated as app
        env = {"DJPROJECT_PG": "limits", "DJPROJECT_PG_PORT": str(cluster.port)}
        env["DJPROJECT_PG_USER"] = "app"
        with _environ(env):
            project = migrated_copy(cluster.root / "work")
        yield cluster, project


@pytest.mark.parametrize("role", ["postgres", "app"])
def test_check_says_the_connection_arithmetic(full: tuple[Cluster, Path], role: str) -> None:
    cluster, project = full
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--check", "worker", "web"],
        cwd=project,
        env=_env(cluster, role),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    (line,) = [t for t in done.stdout.splitlines() if "database connections at once" in t] or [
        f"no connection finding in:\n{done.stdout}{done.stderr}"
    ]
    worker = "worker 4 processes x 8 threads + 4 listeners = 36"
    parts = f"web 2 workers x 1 thread = 2, {worker}, the console 1"
    assert f"may hold 39 database connections at once ({parts})" in line, line
    assert "gives a role 12 (max_connections 15 - 3 reserved for superusers)" in line, line
    assert "so 27 of them are refused" in line, line
    assert "fewer threads (processes x threads of all workers at most 5)" in line, line
    assert "PgBouncer in transaction mode" in line and "CONN_MAX_AGE = 0" in line, line
    # The superuser takes the administrator's slots as well: only then is that said.
    assert ('connects as "postgres", a superuser' in line) == (role == "postgres"), line


def test_idle_threads_give_the_slots_back(full: tuple[Cluster, Path]) -> None:
    """The real console (headless) runs the 4 x 8 worker as the superuser postgres."""
    cluster, project = full
    ran = project.parent / "ran.txt"
    ran.unlink(missing_ok=True)
    env = _env(cluster, "postgres")
    _psql(cluster, "delete from django_tasks_database_dbtaskresult", dbname="limits")
    console = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--headless", "worker"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in console.stdout or ():
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:  # enqueued while the worker starts; each busy thread holds a slot for BUSY seconds,
        # so more threads want one than there are: some are refused, whatever the timing
        enqueue(project, f"for i in range({TASKS}): {RECORD.format(ran=str(ran))}", **env)
        deadline = time.monotonic() + 30
        while len(_tokens(ran)) < TASKS or not _finding(lines):
            assert time.monotonic() < deadline, "".join(lines[-30:])
            time.sleep(0.1)
        done_at = time.monotonic()
        # Every thread has been idle since; a superuser's psql gets a slot within seconds.
        while _psql(cluster, "select 1").returncode != 0:
            assert time.monotonic() - done_at < 5, "psql locked out:\n" + "".join(lines[-30:])
            time.sleep(0.2)
    finally:
        os.killpg(console.pid, signal.SIGTERM)
        console.wait(60)
    assert [t for t, n in Counter(_tokens(ran)).items() if n > 1] == []  # none ran twice
    assert len(set(_tokens(ran))) == TASKS
    finding = _finding(lines)
    assert "worker 4 processes x 8 threads + 4 listeners = 36, the console 1" in finding, finding
    assert "max_connections 15 - 3 reserved for superusers" in finding, finding
    assert 'connects as "postgres", a superuser' in finding, finding
    assert "check DATABASES" not in "".join(lines)  # not "is the server running?"
    # The workers said it about once a minute per process, not once per thread and attempt.
    said = [t for t in lines if "too many clients" in t and " worker | " in t and "[db-" not in t]
    assert 1 <= len(said) <= 4, "".join(said)


def _finding(lines: list[str]) -> str:
    return next((t for t in lines if "[db-refused]" in t), "")


def _tokens(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _psql(cluster: Cluster, sql: str, dbname: str = "postgres") -> subprocess.CompletedProcess[str]:
    argv = ["psql", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", dbname]
    return subprocess.run([*argv, "-Atc", sql], capture_output=True, text=True, timeout=10)


def _env(cluster: Cluster, role: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
        "DJPROJECT_PG": "limits",
        "DJPROJECT_PG_PORT": str(cluster.port),
        "DJPROJECT_PG_USER": role,
        "DJPROJECT_WORKER_ARGS": json.dumps(WORKER_ARGS),
    }


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_full_server_is_not_called_unreachable(full: tuple[Cluster, Path]) -> None:
    """The statistics line under every worker pane: a real refusal of the full cluster."""
    import psycopg

    from backends import taskstats

    cluster, _ = full
    connect = {"host": "127.0.0.1", "port": cluster.port, "user": "postgres", "dbname": "postgres"}
    held: list[psycopg.Connection[Any]] = []
    try:
        with pytest.raises(psycopg.OperationalError) as refused:
            for _ in range(SLOTS + 1):
                held.append(psycopg.connect(**connect))  # type: ignore[arg-type]
    finally:
        for conn in held:
            conn.close()
    said = taskstats.explain(refused.value)
    assert "has no connection slot left" in said and "too many clients" in said, said
    assert "fewer threads" in said and "PgBouncer" in said, said
    assert "is unreachable" not in said and "server is running" not in said, said
