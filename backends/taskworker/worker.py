"""One worker thread: django-tasks-db's claim and run, in a loop that can wait politely.

The claim is django-tasks-db's own (the same queryset, ``exclusive_transaction``,
``get_locked`` and ``claim``) and running a task is its ``Worker.run_task``; only the loop
around them is ours, for two reasons. Waiting: ``Worker.run`` sleeps with ``time.sleep``,
so a retired or draining thread could not leave before its interval ran out. Idle cost: with
every thread polling every interval, 2 x 8 threads cost 3 % of a core on an empty queue; here
idle threads of a process take turns (a process polls about once per interval whatever its
thread count), and a thread that finds work wakes an idle one, so a burst still fills every
thread within a few polls.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING

from django.db import OperationalError, close_old_connections
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from backends.taskworker.setup import log

if TYPE_CHECKING:
    from collections.abc import Callable


class TaskLoop(Worker):
    def __init__(
        self, *, idle_wait: Callable[[TaskLoop], None], found: Callable[[], None], **options: object
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.idle_wait = idle_wait  # the pool decides how long an idle thread waits
        self.found = found  # and whom to wake when there is work
        self.wake = threading.Event()

    def stop(self) -> None:
        """Leave after the current task, or now if waiting."""
        self.running = False
        self.wake.set()

    def run(self) -> None:
        log.debug("started, queues %s", ",".join(self.queue_names))
        if self.startup_delay and self.interval:
            self.wake.wait(random.random())
        while self.running:
            close_old_connections()  # drop a connection the database closed meanwhile
            task, polled = self.claim()
            if task is not None:
                self.found()
                self.run_task(task)
                if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                    log.info("ran %d tasks (max_tasks): recycling", self._run_tasks)
                    return
            elif self.batch and polled:
                log.info("no more tasks (batch): leaving")
                return
            else:
                self.idle_wait(self)

    def claim(self) -> tuple[DBTaskResult | None, bool]:
        """django-tasks-db's claim; (None, False) when SQLite was locked (not "no task")."""
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)  # type: ignore[attr-defined]
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        with exclusive_transaction(tasks.db):
            try:
                task = tasks.get_locked()
                if task is not None:
                    task.claim(self.worker_id)
            except OperationalError as e:
                if not is_locked_database_exception(e):
                    raise
                return None, False
        return task, True

    def run_task(self, db_task_result: DBTaskResult) -> None:
        started = time.monotonic()
        log.debug("start %s %s", db_task_result.task_path, db_task_result.id)
        super().run_task(db_task_result)
        took = time.monotonic() - started
        if db_task_result.status == "FAILED":
            lines = db_task_result.traceback.strip().splitlines()
            log.error(
                "FAILED %s %s in %.2fs: %s",
                db_task_result.task_path,
                db_task_result.id,
                took,
                lines[-1] if lines else db_task_result.exception_class_path,
            )
            log.debug("%s", db_task_result.traceback.rstrip())
        else:
            log.info("done %s %s in %.2fs", db_task_result.task_path, db_task_result.id, took)
