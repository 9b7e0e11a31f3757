"""The chaos scenario, shared by the CI test (short) and ``bench/chaos.py`` (long).

A real supervisor (watchdog on, task statistics polled, as the console runs it) drives the
test project: gunicorn with 2 workers, two task worker masters of 2 processes x 2 threads,
and a producer enqueueing ``record_slowly`` tasks at a steady rate. While it runs, faults are
injected at random (seeded): SIGKILL of worker processes, masters, gunicorn workers and its
master, SIGSTOP then SIGCONT of any of them, and restart / scale through the Supervisor API.
Then the load stops, the queue drains, and everything is stopped.

The scenario only gathers facts (what was enqueued, what ran where, which pids were killed,
every state change, memory and ring sizes, what outlived the stop) into a ``Report``;
``tally`` judges them, so the test asserts and the bench prints from the same numbers.

Run as ``python -m chaos.scenario PROJECT --seconds N`` (from ``tests/``), it prints the
report as JSON: the test runs it in a fresh process, so the supervisor's memory is its own
and Django is set up for the project (task statistics need it) without touching pytest's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
for _path in (str(TESTS), str(REPO)):  # run as a script or imported by bench/chaos.py
    if _path not in sys.path:
        sys.path.insert(0, _path)

from helpers import WORKER, command, entry, get, gunicorn, migrated_copy, query  # noqa: E402

from backends.taskworker import ids  # noqa: E402
from tui.engine.child import Child, State  # noqa: E402
from tui.engine.output import Line  # noqa: E402
from tui.engine.supervisor import Supervisor  # noqa: E402

TABLE = "django_tasks_database_dbtaskresult"
TASK_ENTRIES = ("tasks1", "tasks2")
WORKER_ARGS = {
    "queue": "default",
    "processes": "2",
    "threads": "2",
    "interval": "0.2",
    "drain-timeout": "15",
}
RING_LINES = 300  # small enough that the task workers' logs hit it in a short run
REQUEUED = re.compile(r"requeued (\d+) stuck tasks? ")
TIMER_SLACK = 2.0  # a retry may start this much later than its backoff said (a busy loop)
COME_BACK = 60.0  # from a retry's start to RUNNING, on a machine shared with other work
STOP_HOLD = (0.5, 2.0)  # seconds a SIGSTOPped process stays stopped

# Fault kinds and their weights: kills of workers are the common case in production.
FAULTS = {
    "SIGKILL task worker process": 4,
    "SIGKILL task master": 2,
    "SIGKILL gunicorn worker": 2,
    "SIGKILL gunicorn master": 1,
    "SIGSTOP + SIGCONT": 2,
    "restart (API)": 1,
    "restart twice at once (API)": 1,
    "scale (API)": 2,
}


@dataclass
class Report:
    seconds: float
    seed: int
    enqueued: list[str] = field(default_factory=list)  # tokens, as the producer wrote them
    runs: dict[str, int] = field(default_factory=dict)  # token -> runs recorded by the task
    claims: dict[str, list[int]] = field(default_factory=dict)  # token -> pids that claimed it
    status: dict[str, str] = field(default_factory=dict)  # token -> final status
    killed: list[int] = field(default_factory=list)  # every pid a SIGKILL took down
    faults: dict[str, int] = field(default_factory=dict)  # kind -> times injected
    fault_log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # API calls that raised, loop errors
    late: list[str] = field(default_factory=list)  # retries later than their backoff
    slowest_comeback: float = 0.0  # seconds from an unexpected exit to RUNNING again
    restarts: dict[str, int] = field(default_factory=dict)
    states_at_end: dict[str, str] = field(default_factory=dict)
    processes_at_end: dict[str, int] = field(default_factory=dict)  # worker processes per entry
    web_answers: bool = False
    stuck_at_end: int = 0  # RUNNING rows left after the drain, before a restart recovered them
    requeued: int = 0  # stuck tasks the masters requeued by themselves, from their log lines
    stopped_cleanly: bool = False  # stop_all had to SIGKILL nothing
    rss_max: int = 0  # bytes, this (supervisor) process
    rss_first: int = 0
    ring_lines_max: int = 0
    ring_chars_max: int = 0
    ring_bound_lines: int = RING_LINES
    ring_bound_chars: int = 0
    descendants: int = 0  # distinct processes seen under the supervisor
    orphans: list[str] = field(default_factory=list)
    tails: dict[str, list[str]] = field(default_factory=dict)  # last lines of each entry


@dataclass
class Tally:
    enqueued: int
    finished: int  # SUCCESSFUL rows of enqueued tokens
    duplicated: int  # runs not explained by a SIGKILL of the run before
    lost: int  # enqueued, never finished
    reruns_after_kill: int  # runs again because the first run's process was SIGKILLed
    requeued_from_live: int  # a claim before the last one by a process nobody killed


def tally(report: Report) -> Tally:
    """Exactly once, with the one exception at-least-once delivery has to make.

    A task records its run before it sleeps, and every claim appends the claiming process's
    pid to the row. A task whose process was SIGKILLed mid-run is left RUNNING, requeued by
    recovery and run again: that second run is documented behaviour, so a token may have one
    extra run per earlier claim whose pid is in ``report.killed``. Anything beyond that is a
    duplicate; an earlier claim by a pid nobody killed means a live task was taken away from
    its worker (recovery got it wrong), and is counted on its own.
    """
    killed = set(report.killed)
    duplicated = reruns = from_live = 0
    for token in report.enqueued:
        earlier = report.claims.get(token, [])[:-1]
        by_killed = sum(pid in killed for pid in earlier)
        from_live += len(earlier) - by_killed
        extra = max(0, report.runs.get(token, 0) - 1)
        reruns += min(extra, by_killed)
        duplicated += max(0, extra - by_killed)
    finished = sum(report.status.get(t) == "SUCCESSFUL" for t in report.enqueued)
    lost = sum(
        report.status.get(t) != "SUCCESSFUL" or not report.runs.get(t) for t in report.enqueued
    )
    return Tally(len(report.enqueued), finished, duplicated, lost, reruns, from_live)


# -- the run ----------------------------------------------------------------------------------


class Watcher:
    """Listens to the supervisor: checks every retry against its backoff, times comebacks."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.retry_at: dict[str, float] = {}  # entry -> time.time() its retry is due
        self.down_since: dict[str, float] = {}  # entry -> time.time() of its unexpected exit

    def on_lines(self, child: Child, lines: list[Line]) -> None:
        for line in lines:
            found = REQUEUED.search(line.text)
            if found:
                self.report.requeued += int(found.group(1))

    def on_state(self, child: Child) -> None:
        now = time.time()
        if child.state is State.BACKOFF and child.next_try_at is not None:
            self.retry_at[child.name] = child.next_try_at
            self.down_since.setdefault(child.name, now)
        elif child.state is State.STARTING and child.name in self.retry_at:
            due = self.retry_at.pop(child.name)
            if now > due + TIMER_SLACK:
                self.report.late.append(f"{child.name} retried {now - due:.1f} s after its backoff")
        elif child.state is State.RUNNING and child.name in self.down_since:
            took = now - self.down_since.pop(child.name)
            self.report.slowest_comeback = max(self.report.slowest_comeback, took)
        elif child.state in (State.STOPPING, State.STOPPED):  # asked to stop: no comeback due
            self.retry_at.pop(child.name, None)
            self.down_since.pop(child.name, None)


class Chaos:
    def __init__(self, project: Path, seconds: float, seed: int, rate: float, task_seconds: float):
        self.project = project
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.rate = rate
        self.task_seconds = task_seconds
        self.report = Report(seconds=seconds, seed=seed)
        self.enqueued_file = project.parent / "chaos-enqueued.txt"
        self.ran_file = project.parent / "chaos-ran.txt"
        web, port = gunicorn(project, workers=2)
        self.url = f"http://127.0.0.1:{port}/"
        load = command(
            "load",
            [
                sys.executable,
                str(TESTS / "fixtures" / "chaos_load.py"),
                str(project),
                str(self.enqueued_file),
                str(self.ran_file),
                str(rate),
                str(task_seconds),
            ],
        )
        workers = [entry(project, name, WORKER, dict(WORKER_ARGS)) for name in TASK_ENTRIES]
        self.sup = Supervisor([web, *workers, load], ring_lines=RING_LINES, stats_every=1.0)
        self.sup.subscribe(Watcher(self.report))
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.stopped: set[int] = set()  # SIGSTOPped, SIGCONT not sent yet
        self.calls: set[asyncio.Task[None]] = set()  # API calls under way
        self.me = psutil.Process()

    # -- helpers --

    def processes(self, name: str) -> tuple[psutil.Process | None, list[psutil.Process]]:
        """An entry's main process and its direct children (worker processes)."""
        pid = self.sup[name].pid
        if pid is None:
            return None, []
        try:
            main = psutil.Process(pid)
            return main, main.children()
        except psutil.Error:
            return None, []

    def remember(self) -> None:
        """Every descendant ever seen, for the orphan check after the stop."""
        with contextlib.suppress(psutil.Error):
            for proc in self.me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.seen.setdefault((proc.pid, proc.create_time()), proc)

    def sample(self) -> None:
        rss = self.me.memory_info().rss
        self.report.rss_first = self.report.rss_first or rss
        self.report.rss_max = max(self.report.rss_max, rss)
        for child in self.sup.children.values():
            lines = child.ring.since(child.ring.first_seq)
            self.report.ring_lines_max = max(self.report.ring_lines_max, len(lines))
            self.report.ring_chars_max = max(
                self.report.ring_chars_max, sum(len(ln.text) for ln in lines)
            )
        self.report.ring_bound_chars = next(iter(self.sup.children.values())).ring._max_chars
        self.remember()

    async def api(self, what: str, call: Callable[[], Awaitable[object]]) -> None:
        """An API call that must not raise, whatever state the chaos left the entry in."""
        try:
            await call()
        except Exception:
            self.report.errors.append(f"{what}: {traceback.format_exc()}")

    def kill(self, proc: psutil.Process) -> None:
        """SIGKILL, after noting the process and everything under it as killed: a master's
        death takes its group with it (the supervisor sees to that)."""
        with contextlib.suppress(psutil.Error):
            doomed = [proc, *proc.children(recursive=True)]
            self.report.killed += [p.pid for p in doomed]
            proc.kill()

    # -- faults --

    def inject(self, kind: str) -> str:
        rng = self.rng
        if kind == "SIGKILL task worker process":
            _, workers = self.processes(rng.choice(TASK_ENTRIES))
            return self.kill_one(workers)
        if kind == "SIGKILL task master":
            main, _ = self.processes(rng.choice(TASK_ENTRIES))
            return self.kill_one([main] if main else [])
        if kind == "SIGKILL gunicorn worker":
            return self.kill_one(self.processes("web")[1])
        if kind == "SIGKILL gunicorn master":
            main, _ = self.processes("web")
            return self.kill_one([main] if main else [])
        if kind == "SIGSTOP + SIGCONT":
            return self.stop_one()
        if kind.startswith("restart"):
            name = rng.choice(["web", *TASK_ENTRIES])
            for _ in range(2 if "twice" in kind else 1):  # twice: a key pressed twice
                self.meanwhile(f"restart {name}", partial(self.sup.restart, name))
            return name
        name = rng.choice(["web", *TASK_ENTRIES])
        knob = "workers" if name == "web" else rng.choice(["processes", "threads"])
        value = rng.randint(1, 3)
        self.meanwhile(f"scale {name} {knob} {value}", partial(self.sup.scale, name, knob, value))
        return f"{name} {knob}={value}"

    def meanwhile(self, what: str, call: Callable[[], Awaitable[object]]) -> None:
        """API calls run while the faults go on, as a user's keys would: a restart may meet a
        kill half-way through its drain."""
        self.calls.add(asyncio.get_running_loop().create_task(self.api(what, call)))

    def kill_one(self, candidates: list[psutil.Process]) -> str:
        if not candidates:
            return "no target (entry down)"
        proc = self.rng.choice(candidates)
        self.kill(proc)
        return f"pid {proc.pid}"

    def stop_one(self) -> str:
        candidates = []
        for name in ("web", *TASK_ENTRIES):
            main, children = self.processes(name)
            candidates += [p for p in [main, *children] if p is not None]
        if not candidates:
            return "no target"
        proc = self.rng.choice(candidates)
        with contextlib.suppress(psutil.Error):
            proc.suspend()
            self.stopped.add(proc.pid)
            asyncio.get_running_loop().call_later(
                self.rng.uniform(*STOP_HOLD), self.resume, proc.pid
            )
        return f"pid {proc.pid}"

    def resume(self, pid: int) -> None:
        if pid in self.stopped:
            self.stopped.discard(pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)

    # -- phases --

    async def chaos(self) -> None:
        kinds, weights = list(FAULTS), list(FAULTS.values())
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            await asyncio.sleep(self.rng.uniform(0.4, 1.2))
            self.sample()
            kind = self.rng.choices(kinds, weights)[0]
            target = self.inject(kind)
            self.report.faults[kind] = self.report.faults.get(kind, 0) + 1
            self.report.fault_log.append(
                f"{time.monotonic() - end + self.seconds:6.1f} s  {kind}: {target}"
            )

    async def sampling(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.5)

    async def settle(self, timeout: float) -> None:
        """Back to the configured shape, load stopped, queue drained, stuck tasks recovered."""
        for pid in list(self.stopped):
            self.resume(pid)
        await asyncio.gather(*self.calls)
        for name in TASK_ENTRIES:
            await self.api(f"scale {name} back", partial(self.sup.scale, name, "processes", 2))
            await self.api(f"scale {name} back", partial(self.sup.scale, name, "threads", 2))
        await self.api("scale web back", partial(self.sup.scale, "web", "workers", 2))
        await self.api("stop load", partial(self.sup.stop, "load"))
        self.report.enqueued = self.enqueued_file.read_text().split()
        if not await self.drained(timeout):
            # What nobody recovered: restart the workers, whose start-up recovery requeues
            # tasks of dead processes (this is what a user's restart does, too).
            self.report.stuck_at_end = self.unfinished()
            for name in TASK_ENTRIES:
                await self.api(f"restart {name} to recover", partial(self.sup.restart, name))
            await self.drained(timeout)
        await self.until(self.shape_back, timeout)
        self.report.web_answers = await asyncio.to_thread(get, self.url) == "ok"

    def unfinished(self) -> int:
        return query(
            self.project, f"select count(*) from {TABLE} where status in ('READY', 'RUNNING')"
        )[0][0]

    async def drained(self, timeout: float) -> bool:
        return await self.until(lambda: self.unfinished() == 0, timeout)

    def shape_back(self) -> bool:
        if any(
            c.state is not State.RUNNING for c in self.sup.children.values() if c.name != "load"
        ):
            return False
        return all(len(self.processes(n)[1]) == 2 for n in ("web", *TASK_ENTRIES))

    async def until(self, condition: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(condition):
            if time.monotonic() > deadline:
                return False
            self.sample()
            await asyncio.sleep(0.25)
        return True

    async def run(self) -> Report:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(
            lambda _loop, ctx: self.report.errors.append(
                f"event loop: {ctx.get('message')}: {ctx.get('exception')!r}"
            )
        )
        sampling = loop.create_task(self.sampling())
        try:
            await self.sup.start_all()
            if not await self.until(self.shape_back, 60):
                self.report.errors.append("the entries never all came up before the chaos")
            await self.until(lambda: self.enqueued_file.exists(), 60)
            await self.chaos()
            await self.settle(timeout=max(60.0, self.seconds))
        finally:
            self.remember()
            report = self.report
            report.states_at_end = {n: str(c.state) for n, c in self.sup.children.items()}
            report.processes_at_end = {n: len(self.processes(n)[1]) for n in self.sup.children}
            report.restarts = {n: c.restarts for n, c in self.sup.children.items()}
            report.tails = {
                n: [ln.text for ln in c.ring.since(c.ring.next_seq - 40)]
                for n, c in self.sup.children.items()
            }
            report.stopped_cleanly = await self.sup.stop_all()
            sampling.cancel()
        self.collect()
        return self.report

    def collect(self) -> None:
        """Orphans, then what the database and the tasks' own record say."""
        report = self.report
        report.descendants = len(self.seen)
        deadline = time.monotonic() + 5
        while True:  # the watchdog and the killed take a moment to be reaped
            left = [p for p in self.seen.values() if _alive(p)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        report.orphans = [_describe(p) for p in left]
        ran = self.ran_file.read_text().split() if self.ran_file.exists() else []
        report.runs = dict(Counter(ran))
        rows = query(
            self.project,
            f"select args_kwargs, status, worker_ids from {TABLE} where task_path = ?",
            "testapp.tasks.record_slowly",
        )
        for args_kwargs, status, worker_ids in rows:
            token = str(_json(args_kwargs)["args"][1])
            report.status[token] = status
            parsed = [ids.parse(str(w)) for w in _json(worker_ids)]
            report.claims[token] = [w.pid if w else -1 for w in parsed]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # SQLite text, PG jsonb


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{proc.pid} {' '.join(proc.cmdline())[:120]}"
    return str(proc.pid)


def prepare(workdir: Path) -> Path:
    """A migrated copy of the test project in workdir, laid out as the ``djproject`` fixture
    lays it out (``db.sqlite3`` beside the project), for runs outside pytest."""
    os.environ["DJPROJECT_DB"] = str(workdir / "db.sqlite3")
    return migrated_copy(workdir)


def run(
    project: Path, seconds: float, seed: int, rate: float = 10.0, task_seconds: float = 0.2
) -> Report:
    """The whole scenario in this process, which becomes the supervising process; Django is
    set up here for the project, as the console sets it up for the task statistics."""
    sys.path.insert(0, str(project))
    os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
    return asyncio.run(Chaos(project, seconds, seed, rate, task_seconds).run())


def main() -> None:
    p = argparse.ArgumentParser(description="Run the chaos scenario and print its report as JSON")
    p.add_argument("project", type=Path, help="a migrated copy of tests/djproject")
    p.add_argument("--seconds", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(json.dumps(asdict(run(args.project, args.seconds, seed))))


if __name__ == "__main__":
    main()
