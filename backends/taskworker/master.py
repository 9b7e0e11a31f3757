"""The prefork master, as gunicorn's: keeps ``processes`` worker processes of ``threads`` each.

It replaces a process that dies (after requeueing, or failing, the tasks it left RUNNING),
changes both counts live, and on stop lets every process drain, killing what is still
running after ``--drain-timeout`` and recovering those tasks too. Signals:

  SIGTTIN / SIGTTOU   one more / one fewer worker process (never below 1)
  SIGUSR1 / SIGUSR2   one more / one fewer thread in every process (never below 1)
  SIGTERM, SIGHUP     drain and exit;  SIGINT (Ctrl-C) the same, a second one kills

The console does not count signals: it sends absolute targets over the control channel
(``backends.control``, when its path is in the environment) and reads back the counts.

Signal handlers only record the signal, as gunicorn's arbiter does (its SIG_QUEUE): the main
loop, woken by the wakeup fd, acts on it. A handler that logged or wrote a pipe could run in
the middle of the main thread's own write to that stream, which raises "reentrant call".
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

from backends import control
from backends.backoff import Backoff
from backends.base import plural
from backends.taskworker import ids
from backends.taskworker.process import HELD
from backends.taskworker.setup import log, report_database, setup_django, setup_logging

CRASH_DELAY_CAP = 30.0
RECOVERY_RETRY_CAP = 30.0  # a recovery the database refused is retried, backing off to this
HEALTHY_AFTER = 5.0  # a process up this long resets the crash backoff


def run_master(options: argparse.Namespace) -> int:
    threading.current_thread().name = f"{ids.this_host()}:{os.getpid()}"  # as its children's
    setup_logging(options.verbosity)
    master = Master(options)  # signal handlers first: a TTIN during start-up must not stop us
    setup_django()
    report_database()
    return master.run()


def spawn(argv: list[str]) -> subprocess.Popen[str]:
    """Start a worker process with SIGTERM and SIGINT blocked (a child inherits the signal mask).

    A stop sent before the process has its handler (its first few hundred milliseconds: Python
    and Django starting) would kill it half-started, by the default action. Blocked, it waits,
    and the process's handler receives it as soon as it is installed (`process.run_process`
    unblocks both), as a drain. Blocked here only for the time of the fork and exec.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class Child:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self.retiring = False


class Master:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.processes: int = options.processes
        self.threads: int = options.threads
        self.children: dict[int, Child] = {}
        self.stopping = False
        self.interrupts = 0
        self.deadline = 0.0
        self.killed = False
        self.batch_done = False
        self.crashes = Backoff(1.0, CRASH_DELAY_CAP)
        self.next_spawn = 0.0
        # Recoveries not done yet (the database was down): (pids, or None for all; what).
        self.unrecovered: list[tuple[list[int] | None, str]] = []
        self.recoveries = Backoff(1.0, RECOVERY_RETRY_CAP)
        self.next_recovery = 0.0
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        # Signals received and not acted on yet, in order. The handler appends and nothing
        # more; several of one number pending at once still reach it once (CPython).
        self.signals: deque[int] = deque()
        self.actions: dict[int, Callable[[], None]] = {
            signal.SIGTTIN: lambda: self._set_processes(self.processes + 1),
            signal.SIGTTOU: lambda: self._set_processes(self.processes - 1),
            signal.SIGUSR1: lambda: self._set_threads(self.threads + 1),
            signal.SIGUSR2: lambda: self._set_threads(self.threads - 1),
            signal.SIGTERM: self._stop,
            signal.SIGHUP: self._stop,
            signal.SIGINT: self._interrupt,
        }
        for sig in self.actions:
            signal.signal(sig, self._record)
        path = os.environ.pop(control.ENV, None)  # ours alone: worker processes have none
        self.control: control.Listener | None = None
        if path:
            try:
                self.control = control.Listener(path)
            except OSError as e:  # the console's folder is gone: work on, scale by signals
                log.warning("no control channel at %s (%s): scaling by signals only", path, e)
        self.asked: set[str] = set()  # consoles waiting for our counts

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)

    # -- requests (acted on in the main loop, never in a handler) -----------------------------

    def _act(self) -> None:
        """Signals recorded since the last turn, then targets from the control channel."""
        while self.signals:
            self.actions[self.signals.popleft()]()
        if self.control is None:
            return
        for values, address in self.control.receive():
            if "processes" in values:
                self._set_processes(values["processes"])
            if "threads" in values:
                self._set_threads(values["threads"])
            self.asked.add(address)

    def _answer(self) -> None:
        """The counts now: active (not retiring) processes, and the threads each runs."""
        if self.control is None:
            return
        active = sum(not c.retiring for c in self.children.values())
        for address in self.asked:
            self.control.answer(address, {"processes": active, "threads": self.threads})
        self.asked.clear()

    def _set_processes(self, wanted: int) -> None:
        wanted = max(1, wanted)
        if wanted != self.processes:
            self.processes = wanted
            log.info(
                "scaling to %s x %s",
                plural(self.processes, "process"),
                plural(self.threads, "thread"),
            )

    def _set_threads(self, wanted: int) -> None:
        wanted = max(1, wanted)
        if wanted == self.threads:
            return
        self.threads = wanted
        log.info(
            "scaling to %s x %s", plural(self.processes, "process"), plural(self.threads, "thread")
        )
        for child in self.children.values():
            if not child.retiring:
                self._tell(child, f"threads {self.threads}")

    def _interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts > 1:
            self._kill_all("second interrupt")
        else:
            self._stop()

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.deadline = time.monotonic() + self.options.drain_timeout
        log.warning(
            "stopping: draining %s (up to %.0f s)",
            plural(len(self.children), "worker process"),
            self.options.drain_timeout,
        )
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        log.info(
            "master up: %s x %s, queues %s",
            plural(self.processes, "process"),
            plural(self.threads, "thread"),
            self.options.queue_name,
        )
        self._recover(None, "at start-up")
        try:
            return self._loop()
        finally:
            if self.control is not None:
                self.control.close()

    def _loop(self) -> int:
        wake = [self.wake_r, *([self.control.fileno()] if self.control else [])]
        while True:
            self._act()
            self._reap()
            self._retry_recovery()
            if self.stopping or self.batch_done:
                if not self.children:
                    log.info("all worker processes stopped")
                    return 1 if self.killed else 0
                if self.stopping and time.monotonic() > self.deadline and not self.killed:
                    self._kill_all("drain timeout")
            else:
                self._balance()
            self._answer()
            with contextlib.suppress(InterruptedError):
                select.select(wake, [], [], 0.5)
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)

    def _balance(self) -> None:
        active = [c for c in self.children.values() if not c.retiring]
        for child in sorted(active, key=lambda c: c.started)[self.processes :]:
            child.retiring = True
            log.info("retiring worker process %d (finishes its tasks first)", child.proc.pid)
            child.proc.send_signal(signal.SIGTERM)
        if len(active) < self.processes and time.monotonic() >= self.next_spawn:
            for _ in range(self.processes - len(active)):
                self._spawn()

    def _spawn(self) -> None:
        o = self.options
        argv = [
            sys.executable,
            "-m",
            "backends.taskworker",
            "--child",
            f"--threads={self.threads}",
            f"--queue-name={o.queue_name}",
            f"--exclude-queues={o.exclude_queues}",
            f"--interval={o.interval}",
            f"--wake={o.wake}",
            f"--safety-interval={o.safety_interval}",
            f"--backend={o.backend_name}",
            f"--verbosity={o.verbosity}",
            f"--startup-delay={'yes' if o.startup_delay else 'no'}",
        ]
        if o.batch:
            argv.append("--batch")
        if o.max_tasks:
            argv.append(f"--max-tasks={o.max_tasks}")
        proc = spawn(argv)
        self.children[proc.pid] = Child(proc)
        log.info("started worker process %d with %s", proc.pid, plural(self.threads, "thread"))

    def _reap(self) -> None:
        for pid, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None:
                continue
            del self.children[pid]
            with contextlib.suppress(OSError):
                child.proc.stdin.close()  # type: ignore[union-attr]
            if code == 0:
                if self.options.batch:
                    self.batch_done = True
                continue
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            log.error("worker process %d died (%s)", pid, how)
            self._recover([pid], f"of process {pid}")
            if not self.stopping:
                if time.monotonic() - child.started > HEALTHY_AFTER:
                    self.crashes.reset()  # respawned at once; a next crash waits 1 s
                    delay = 0.0
                else:
                    delay = self.crashes.next()
                self.next_spawn = time.monotonic() + delay

    def _kill_all(self, why: str) -> None:
        log.error("%s: killing %s", why, plural(len(self.children), "worker process"))
        self.killed = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _tell(self, child: Child, line: str) -> None:
        with contextlib.suppress(OSError):
            child.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
            child.proc.stdin.flush()  # type: ignore[union-attr]

    def _recover(self, pids: list[int] | None, what: str) -> None:
        """Tasks left RUNNING by dead processes of this host go back to READY (or FAILED).

        If the database is down, the tasks stay RUNNING under a dead pid (detectable as stuck)
        and the recovery is retried until the database answers (`_retry_recovery`).
        """
        self.unrecovered.append((pids, what))
        self._retry_recovery()

    def _retry_recovery(self) -> None:
        """Recoveries not done yet, oldest first; backing off while the database is down."""
        if not self.unrecovered or time.monotonic() < self.next_recovery:
            return
        while self.unrecovered:
            pids, what = self.unrecovered[0]
            error = self._try_recover(pids, what)
            if error is not None:
                delay = self.recoveries.next()
                self.next_recovery = time.monotonic() + delay
                log.error(
                    "could not recover stuck tasks %s: %s; retrying in %.0f s", what, error, delay
                )
                return
            self.unrecovered.pop(0)
        self.recoveries.reset()

    def _try_recover(self, pids: list[int] | None, what: str) -> str | None:
        """One attempt; the error on one line if the database refused it."""
        from django.db import connections, router
        from django_tasks_db.models import DBTaskResult

        from backends.taskworker.recovery import recover

        try:
            done = recover(
                self.options.on_crash, using=router.db_for_write(DBTaskResult), pids=pids
            )
        except Exception as e:  # the database may be down
            return " ".join(str(e).split()) or type(e).__name__
        finally:
            with contextlib.suppress(Exception):
                connections.close_all()
        if done:
            verb = "requeued" if self.options.on_crash == "requeue" else "marked failed"
            log.warning("%s %s %s", verb, plural(len(done), "stuck task"), what)
        return None
