"""Small shared pieces for tests that drive the supervisor against real processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

from backends.base import Knob, Project
from backends.command import Command
from tui.project import Entry, build_entry

WORKER = "django_prodserver.backends.django_tasks.DjangoTasksWorker"


DJPROJECT = Path(__file__).resolve().parent / "djproject"


def migrated_copy(workdir: Path) -> Path:
    """A private, migrated copy of tests/djproject in ``workdir``, for the database that
    ``DJPROJECT_DB`` / ``DJPROJECT_PG`` name; a failed migrate shows what it said."""
    project = workdir / "djproject"
    shutil.copytree(DJPROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3*"))
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"djproject migrate failed:\n{done.stdout}{done.stderr}"
    return project


def entry(djproject: Path, name: str, backend: str, args: Any, **extra: Any) -> Entry:
    """An entry of the test Django project, as PRODUCTION_PROCESSES would declare it."""
    project = Project(
        "djproject.settings",
        str(djproject),
        pythonpath=(str(djproject),),
        settings=SimpleNamespace(
            WSGI_APPLICATION="djproject.wsgi.application",
            ALLOWED_HOSTS=os.environ.get("DJPROJECT_ALLOWED_HOSTS", "*").split(","),
        ),
    )
    built = build_entry(name, {"BACKEND": backend, "ARGS": args, **extra}, project)
    assert built.error is None, built.error
    return built


def gunicorn(djproject: Path, workers: int) -> tuple[Entry, int]:
    """A real gunicorn entry of the test project on a free loopback port."""
    port = free_port()
    spec = {"bind": f"127.0.0.1:{port}", "workers": str(workers)}
    return entry(djproject, "web", "django_prodserver.backends.gunicorn.GunicornServer", spec), port


def query(djproject: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the test project's database directly: SQLite, or the scratch PostgreSQL one."""
    pg = os.environ.get("DJPROJECT_PG")
    if pg:
        import psycopg

        port = os.environ.get("DJPROJECT_PG_PORT", "5432")
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=pg) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]
    with sqlite3.connect(djproject.parent / "db.sqlite3", timeout=20) as conn:
        return conn.execute(sql, params).fetchall()


def statuses(djproject: Path) -> dict[str, int]:
    return dict(
        query(
            djproject,
            "select status, count(*) from django_tasks_database_dbtaskresult group by status",
        )
    )


def enqueue(djproject: Path, code: str, **env: str) -> None:
    """Enqueue real tasks with ``.enqueue()`` in the project's own Django, in one transaction;
    ``env`` adds variables for that process (e.g. its own SQLite lock wait)."""
    script = "from django.db import transaction\nfrom testapp import tasks\n"
    script += "with transaction.atomic():\n"
    script += "".join(f"    {line}\n" for line in code.splitlines())
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=djproject,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def run_json(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> Any:
    """Run a scenario in a fresh process (Django settings load once per process) and return
    the JSON object it prints last; a failure shows everything the process said."""
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"scenario failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


def command(name: str, argv: list[str], **extra: Any) -> Entry:
    project = Project("unused.settings", "/tmp", settings=SimpleNamespace())
    return build_entry(
        name, {"BACKEND": "backends.command.Command", "ARGS": argv, **extra}, project
    )


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition with a deadline instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.02)


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Pids still alive (not zombies) after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if is_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ScaledByCommand(Command):
    """A real backend whose knob changes by running a command, as Celery's pool does."""

    knobs = (Knob("size", by_command=True),)

    def scale_argv(self, knob: str, before: int, wanted: int, pid: int) -> list[str]:
        return [sys.executable, "-c", f"print('{knob} of {pid}: {before} -> {wanted}')"]


class InAWorkersPlace(Command):
    """A real program in a task worker's place: what the console reads of a worker's output
    (wake-up reports), without Django or a database."""

    kind = "tasks"


class Drained:
    """A program in its own session, its output (stdout and stderr) drained by a thread into
    ``lines``, so it never blocks on a pipe the test is not reading yet."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, count: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"never saw {text!r} x{count}:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def worker_process(djproject: Path, args: Any) -> asyncio.subprocess.Process:
    """The task worker of ``args`` as a bare child of the test (no supervisor), its output
    piped: for tests that read or signal the worker themselves."""
    launch = entry(djproject, "worker", WORKER, args).launch()
    return await asyncio.create_subprocess_exec(
        *launch.argv,
        cwd=launch.cwd,
        env={**os.environ, **launch.env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
