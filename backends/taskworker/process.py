"""One worker process: ``threads`` task loops, scaled by its master.

Each thread claims and runs tasks with django-tasks-db's own code (see worker.py), so this
adds concurrency, not a queue protocol. The master sends ``threads N`` lines on stdin; a
retired thread finishes its current task first. SIGTERM drains every thread; stdin closing
(the master died) drains too, so no worker outlives its master.

A drain is one latch, ``Pool.draining``: set once and never cleared, checked under the pool's
lock before a loop starts and before every claim (`Pool.admit`). So a stop that lands while the
process is starting its threads (a master stopped or scaled down just after spawning it) starts
no further loop and lets no loop claim, wherever it lands; the drain's line counts every claim
made before it. The SIGTERM handler only sets the latch; the main loop retires the loops and
says so. A SIGTERM sent before the handler exists is held back by the master (`master.spawn`)
and arrives once it does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
import time
import traceback
from types import FrameType
from typing import TYPE_CHECKING

from backends.base import plural
from backends.taskworker import ids
from backends.taskworker.setup import log, setup_django, setup_logging
from backends.taskworker.wakeup import Wakeup

if TYPE_CHECKING:
    from backends.taskworker.worker import TaskLoop

RESTART_DELAY = 2.0  # a thread that crashed (a bug: outages are waited out in the loop) restarts
TICK = 0.2  # seconds between the main loop's looks at its threads, when no signal wakes it
HELD = {signal.SIGTERM, signal.SIGINT}  # blocked by the master until our handlers are in place


def run_process(options: argparse.Namespace) -> int:
    pool = Pool(options)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides what Ctrl-C means
    signal.signal(signal.SIGTERM, pool.stop_asked)
    signal.set_wakeup_fd(pool.wake_w)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)  # one sent while we started lands now
    threading.current_thread().name = f"{ids.this_host()}:{os.getpid()}"
    setup_logging(options.verbosity)
    setup_django()
    if not options.batch:  # a batch ends when nothing is due: nothing to wait for
        pool.wakeup = Wakeup(options, threading.current_thread().name, pool.ring, pool.rearm)
        pool.wakeup.start()
    pool.resize(options.threads)  # before listening: a "threads N" already sent must win
    threading.Thread(target=pool.listen, args=(sys.stdin,), daemon=True, name="control").start()
    try:
        return pool.run()
    finally:
        if pool.wakeup is not None:
            pool.wakeup.stop()


class Pool:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.pid = os.getpid()
        self.threads: dict[int, Loop] = {}  # thread number -> its loop, alive or retiring
        self.next_number = 1
        self.draining = False  # the latch: no loop starts and no claim is made once it is set
        self.lock = threading.Lock()  # starts loops, admits claims, and counts them for a drain
        self.idle: list[TaskLoop] = []  # threads waiting for work, longest waiting first
        self.rung = False  # a ring found no idle thread: the next to go idle looks again
        self.wakeup: Wakeup | None = None  # push wake-up; None polls every --interval
        self.wake_r, self.wake_w = os.pipe()  # wakes the main loop: signals, stdin closing
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def stop_asked(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGTERM's handler: sets the latch, nothing more (`run` acts on it)."""
        self.draining = True

    def drain(self) -> None:
        """A drain from a thread (stdin closed): the latch, and a word to the main loop."""
        self.draining = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"\0")

    def listen(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            word, _, value = line.partition(" ")
            if word == "threads" and value.strip().isdigit():
                self.resize(int(value))
        self.drain()  # stdin closed: the master is gone

    def resize(self, wanted: int) -> None:
        with self.lock:
            if self.draining:
                return
            active = sorted(
                (loop for loop in self.threads.values() if not loop.retiring),
                key=lambda loop: loop.number,
            )
            wanted = max(1, wanted)
            for loop in active[wanted:]:
                loop.retire()
            for _ in range(wanted - len(active)):
                self._start()
        if active and len(active) != wanted:
            log.info("threads %d -> %d", len(active), wanted)

    def _start(self) -> None:
        """With the lock held. The first loop imports the task code (tens of milliseconds):
        the latch is read after that, right before the thread starts."""
        number = self.next_number
        self.next_number += 1
        loop = Loop(self, number)
        if self.draining:
            return
        self.threads[number] = loop
        loop.thread.start()

    def admit(self, worker: TaskLoop) -> bool:
        """Whether ``worker`` may claim the task it has just locked: not once the latch is set.

        Under the lock the drain counts busy threads under, so every claim is either made
        before the drain, and counted in its line, or not made at all."""
        with self.lock:
            if self.draining:
                return False
            worker.busy = True
            return True

    def idle_wait(self, worker: TaskLoop) -> None:
        """Idle threads take turns: each waits the poll interval times the number of idle
        threads, so the process polls about once per interval however many threads it has.
        The interval is the safety net's while push wake-up works (`Wakeup.interval`)."""
        with self.lock:
            if self.rung:  # a task became ready while every thread was busy or claiming
                self.rung = False
                return
            self.idle.append(worker)
            turns = len(self.idle)
        interval = self.wakeup.interval() if self.wakeup else self.options.interval
        worker.wake.wait(interval * turns)
        worker.wake.clear()
        with self.lock:
            if worker in self.idle:
                self.idle.remove(worker)

    def found(self) -> None:
        """There is work: wake the longest-waiting idle thread to claim right away."""
        with self.lock:
            self._wake_one()

    def ring(self) -> None:
        """A task became ready (a notification, a doorbell, a deferred task's time): one idle
        thread claims it. With none idle, the next thread to go idle claims again first: the
        ring may have come between its empty claim and its wait."""
        with self.lock:
            if not self._wake_one():
                self.rung = True

    def _wake_one(self) -> bool:
        """With the lock held: wake the longest-waiting idle thread; whether there was one."""
        if not self.idle:
            return False
        self.idle.pop(0).wake.set()
        return True

    def rearm(self) -> None:
        """The wake-up mode changed: every thread looks now, the idle ones then wait the new
        interval, and those backing off from an outage need not wait out their 10 s when the
        listener found the database back."""
        with self.lock:
            for loop in self.threads.values():
                loop.worker.wake.set()
            self.idle.clear()

    def run(self) -> int:
        """Wait for every thread to end, replacing loops that crashed while not draining, and
        retire them all once the latch is set.

        Loops that end by themselves (``--batch``, ``--max-tasks``) are not replaced: the
        process exits once all have, and the master decides whether to start a fresh one.
        """
        retired = False
        while True:
            busy = None
            with self.lock:
                if self.draining and not retired:
                    retired = True
                    busy = sum(loop.worker.busy for loop in self.threads.values())
                    for loop in self.threads.values():
                        loop.retire()
                for number, loop in list(self.threads.items()):
                    if loop.thread.is_alive():
                        continue
                    del self.threads[number]
                    if loop.crashed and not loop.retiring and not self.draining:
                        self._start()
                done = not self.threads
            if busy is not None:
                log.warning("draining: no new claims, waiting for %s", plural(busy, "running task"))
            if done:
                return 0
            with contextlib.suppress(InterruptedError):
                select.select([self.wake_r], [], [], TICK)
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_r, 4096)


class Loop:
    """A thread running one task loop under its own worker id."""

    def __init__(self, pool: Pool, number: int) -> None:
        from backends.taskworker.worker import TaskLoop

        o = pool.options
        self.number = number
        self.retiring = False
        self.crashed = False
        self.worker = TaskLoop(
            idle_wait=pool.idle_wait,
            found=pool.found,
            admit=pool.admit,
            queue_names=o.queue_name.split(","),
            interval=o.interval,
            batch=o.batch,
            backend_name=o.backend_name,
            startup_delay=o.startup_delay,
            max_tasks=o.max_tasks,
            worker_id=ids.make(pool.pid, number),
            excluded_queue_names=[q for q in o.exclude_queues.split(",") if q],
        )
        label = ids.label(self.worker.worker_id)  # its log lines' prefix: host:pid:thread
        self.thread = threading.Thread(target=self._run, name=label, daemon=True)

    def retire(self) -> None:
        self.retiring = True
        self.worker.stop()

    def _run(self) -> None:
        from django.db import connections

        try:
            self.worker.run()
        except Exception:
            self.crashed = True
            log.error(
                "worker loop crashed, restarting in %.0f s:\n%s",
                RESTART_DELAY,
                traceback.format_exc().rstrip(),
            )
            time.sleep(RESTART_DELAY)
        finally:
            connections.close_all()
