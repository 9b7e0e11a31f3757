"""One worker process: ``threads`` task loops, scaled by its master.

Each thread claims and runs tasks with django-tasks-db's own code (see worker.py), so this
adds concurrency, not a queue protocol. The master sends ``threads N`` lines on stdin; a
retired thread finishes its current task first. SIGTERM drains every thread; stdin closing
(the master died) drains too, so no worker outlives its master.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from backends.base import plural
from backends.taskworker import ids
from backends.taskworker.setup import log, setup_django, setup_logging

if TYPE_CHECKING:
    from backends.taskworker.worker import TaskLoop

RESTART_DELAY = 2.0  # a thread that crashed (a bug: outages are waited out in the loop) restarts


def run_process(options: argparse.Namespace) -> int:
    threading.current_thread().name = f"{ids.this_host()}:{os.getpid()}"
    setup_logging(options.verbosity)
    setup_django()
    pool = Pool(options)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides what Ctrl-C means
    signal.signal(signal.SIGTERM, lambda *_: pool.drain())
    pool.resize(options.threads)  # before listening: a "threads N" already sent must win
    threading.Thread(target=pool.listen, args=(sys.stdin,), daemon=True, name="control").start()
    return pool.run()


class Pool:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.pid = os.getpid()
        self.threads: dict[int, Loop] = {}  # thread number -> its loop, alive or retiring
        self.next_number = 1
        self.draining = threading.Event()
        self.lock = threading.RLock()  # the SIGTERM handler may run while it is held
        self.idle: list[TaskLoop] = []  # threads waiting for work, longest waiting first

    def listen(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            word, _, value = line.partition(" ")
            if word == "threads" and value.strip().isdigit():
                self.resize(int(value))
        self.drain()  # stdin closed: the master is gone

    def resize(self, wanted: int) -> None:
        with self.lock:
            if self.draining.is_set():
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
        number = self.next_number
        self.next_number += 1
        loop = Loop(self, number)
        self.threads[number] = loop
        loop.thread.start()

    def idle_wait(self, worker: TaskLoop) -> None:
        """Idle threads take turns: each waits the interval times the number of idle threads,
        so the process polls about once per interval however many threads it has."""
        with self.lock:
            self.idle.append(worker)
            turns = len(self.idle)
        worker.wake.wait(self.options.interval * turns)
        worker.wake.clear()
        with self.lock:
            if worker in self.idle:
                self.idle.remove(worker)

    def found(self) -> None:
        """There is work: wake the longest-waiting idle thread to claim right away."""
        with self.lock:
            if self.idle:
                self.idle.pop(0).wake.set()

    def drain(self) -> None:
        if self.draining.is_set():
            return
        self.draining.set()
        with self.lock:
            busy = sum(loop.worker.running_task for loop in self.threads.values())
            for loop in self.threads.values():
                loop.retire()
        log.warning("draining: no new claims, waiting for %s", plural(busy, "running task"))

    def run(self) -> int:
        """Wait for every thread to end, replacing loops that crashed while not draining.

        Loops that end by themselves (``--batch``, ``--max-tasks``) are not replaced: the
        process exits once all have, and the master decides whether to start a fresh one.
        """
        while True:
            with self.lock:
                for number, loop in list(self.threads.items()):
                    if loop.thread.is_alive():
                        continue
                    del self.threads[number]
                    if loop.crashed and not loop.retiring and not self.draining.is_set():
                        self._start()
                if not self.threads:
                    return 0
            time.sleep(0.2)


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
