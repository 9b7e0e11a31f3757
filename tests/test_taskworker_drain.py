"""A worker process stopped while it starts: it starts nothing more and claims nothing after.

The stop lands at each point of a worker process's start-up, on real processes, real signals
and real tasks in SQLite and PostgreSQL: before the process has a handler (through the master,
which is what stops a process a moment after spawning it), the moment the handler exists
(Django still starting), while its threads start and make their first claims, and while every
thread waits inside its first claim for a database the test holds locked. Where a point can be
pinned it is found by watching the process (/proc: its caught signals, its threads, whether
all of them are asleep), not by guessing a delay.

The rule each case checks: the process exits by itself (code 0, not by the master's kill) as
soon as what it claimed has run; every task it claimed is counted in its "draining" line (so
none was claimed after the drain began); no task ran twice.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import POSTGRES
from helpers import WORKER, enqueue, entry, query, statuses

from backends import control

TABLE = "django_tasks_database_dbtaskresult"
THREADS = 3
TASK_SECONDS = 1.0  # longer than a start-up stop takes to reach the drain line
EXIT_WITHIN = 20.0  # seconds: a process that claimed runs one task per thread, then exits
DRAINING = re.compile(r"^\S+:(\d+) draining: no new claims, waiting for (\d+) running tasks?$")


class Output:
    """A process's output lines, read as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def drained(self) -> dict[int, int]:
        """pid -> the running tasks its "draining" line counted."""
        found = (DRAINING.match(line) for line in self.lines)
        return {int(m[1]): int(m[2]) for m in found if m}

    def text(self) -> str:
        return "\n".join(self.lines)


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, every: float = 0.0005
) -> None:
    """Poll ``condition``: every half millisecond by default, to catch a moment of start-up."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def launch_env(djproject: Path, args: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The worker entry's command and environment, as the console would start it."""
    launch = entry(djproject, "worker", WORKER, args).launch()
    env = {**os.environ, **launch.env}
    env.pop(control.ENV, None)  # no console listens here: no channel
    return list(launch.argv), env


def worker_process(djproject: Path) -> tuple[subprocess.Popen[str], Output]:
    """One worker process of ``THREADS`` threads, with the options its master gives it."""
    argv, env = launch_env(djproject, {"queue": "default"})
    argv = [
        *argv[:3],
        "--child",
        f"--threads={THREADS}",
        "--queue-name=default",
        "--interval=0.1",
        "--startup-delay=no",
    ]
    proc = subprocess.Popen(
        argv,
        cwd=djproject,
        env=env,
        stdin=subprocess.PIPE,  # the master's pipe: kept open, as a live master does
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, Output(proc)


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started in the block; any still running after it are killed."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def handler_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM: Python installed its handler."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def asleep(pid: int) -> bool:
    """Every thread of the process is blocked (state S): none can be between two steps."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            states.append(f.read().rpartition(")")[2].split()[0])
    return all(state == "S" for state in states)


def enqueue_slow(djproject: Path, n: int) -> Path:
    ran = djproject.parent / "ran.txt"
    enqueue(
        djproject,
        f"for i in range({n}): tasks.record_slowly.enqueue({str(ran)!r}, str(i), {TASK_SECONDS})",
    )
    return ran


def claims(djproject: Path) -> Counter[int]:
    """pid -> tasks its threads claimed; every row claimed at most once."""
    rows = query(djproject, f"select worker_ids from {TABLE}")
    by_pid: Counter[int] = Counter()
    for (raw,) in rows:
        worker_ids = raw if isinstance(raw, list) else json.loads(raw)
        assert len(worker_ids) <= 1, f"a task was claimed twice: {worker_ids}"
        by_pid.update(int(w.split("@")[0].split(":")[-2]) for w in worker_ids)
    return by_pid


def assert_ran_once(ran: Path) -> None:
    runs = Counter(ran.read_text().split()) if ran.exists() else Counter()
    assert [t for t, n in runs.items() if n > 1] == [], "tasks that ran twice"


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
def test_a_stop_right_after_spawning_drains_the_new_processes(djproject: Path) -> None:
    """The master stopped a moment after it started its processes (a restart, a scale-down):
    the stop reaches each process before it has a handler, and is a drain all the same."""
    enqueue_slow(djproject, 10)
    argv, env = launch_env(
        djproject, {"queue": "default", "processes": "2", "threads": "2", "interval": "0.1"}
    )
    with processes() as started:
        master = subprocess.Popen(
            argv,
            cwd=djproject,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(master)
        out = Output(master)
        spawned = lambda: sum("started worker process" in line for line in out.lines)  # noqa: E731
        wait_for(lambda: spawned() == 2, 30, "2 worker processes started")
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=EXIT_WITHIN) == 0, out.text()
    out.reader.join(5)
    assert "died" not in out.text() and "killing" not in out.text(), out.text()
    assert list(out.drained().values()) == [0, 0], out.text()
    assert statuses(djproject) == {"READY": 10}  # nothing claimed, nothing left RUNNING


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
def test_a_stop_at_any_moment_of_thread_start_up_claims_nothing_after_it(
    djproject: Path,
) -> None:
    """Six processes at once, each stopped at its own point: the moment its SIGTERM handler
    exists (on main: just before its threads start), and 0-60 ms after its first thread
    started (while the others start and the first claims are made)."""
    ran = enqueue_slow(djproject, 6 * THREADS + 6)
    anchors: list[tuple[Callable[[int], bool], float]] = [(handler_installed, 0.0)]
    anchors += [(lambda pid: thread_count(pid) > 1, ms / 1000) for ms in (0, 15, 30, 45, 60)]

    def stop_at(proc: subprocess.Popen[str], anchor: Callable[[int], bool], delay: float) -> None:
        wait_for(lambda: anchor(proc.pid), 60, "the point to stop at")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)

    with processes() as started:
        outputs = []
        stoppers = []
        for anchor, delay in anchors:
            proc, out = worker_process(djproject)
            started.append(proc)
            outputs.append(out)
            stoppers.append(threading.Thread(target=stop_at, args=(proc, anchor, delay)))
            stoppers[-1].start()
        for stopper in stoppers:
            stopper.join()
        deadline = time.monotonic() + EXIT_WITHIN
        codes = []
        for proc in started:
            try:
                codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    for out in outputs:
        out.reader.join(5)
    said = "\n".join(out.text() for out in outputs)
    assert codes == [0] * len(anchors), f"exit codes {codes} (None: still running)\n{said}"
    drained: dict[int, int] = {}
    for out in outputs:
        drained.update(out.drained())
    claimed = claims(djproject)
    assert {p.pid: claimed[p.pid] for p in started} == drained, said  # none after its drain
    assert_ran_once(ran)
    assert statuses(djproject).get("RUNNING", 0) == 0


@contextmanager
def database_locked(djproject: Path) -> Iterator[None]:
    """Hold the task table so that no claim can go through until the block ends."""
    pg = os.environ.get("DJPROJECT_PG")
    if pg:
        import psycopg

        with psycopg.connect(host="127.0.0.1", user="postgres", dbname=pg) as conn:
            conn.execute(f"lock table {TABLE} in exclusive mode")  # FOR UPDATE waits
            yield
            conn.rollback()
        return
    conn = sqlite3.connect(djproject.parent / "db.sqlite3", isolation_level=None)
    try:
        conn.execute("begin exclusive")  # every other connection waits (busy timeout: 20 s)
        yield
        conn.execute("rollback")
    finally:
        conn.close()


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
def test_a_stop_while_every_thread_waits_in_its_first_claim_claims_nothing(
    djproject: Path,
) -> None:
    """All threads started and blocked inside their first claim (the test holds the database):
    the stop comes, the process says it drains, the database is let go; no thread claims."""
    ran = enqueue_slow(djproject, 10)
    with processes() as started:
        proc, out = worker_process(djproject)
        started.append(proc)
        with database_locked(djproject):
            # Every loop, the control, wake-up and main threads exist and sleep: each loop is
            # past its start, inside its claim, waiting for the database (or for its turn).
            wait_for(lambda: thread_count(proc.pid) == THREADS + 3, 60, "threads started")
            wait_for(lambda: asleep(proc.pid), 10, "threads waiting", every=0.02)
            wait_for(lambda: asleep(proc.pid), 10, "threads still waiting", every=0.02)
            proc.send_signal(signal.SIGTERM)
            wait_for(out.drained, 10, "the draining line")
        code = proc.wait(timeout=EXIT_WITHIN)
    out.reader.join(5)
    assert code == 0, out.text()
    assert out.drained() == {proc.pid: 0}, out.text()
    assert statuses(djproject) == {"READY": 10}, out.text()  # no claim after the drain began
    assert_ran_once(ran)
