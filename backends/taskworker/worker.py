"""django-tasks-db's Worker, with one line per task that says who ran it and how it went."""

from __future__ import annotations

import time

from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from backends.taskworker.setup import log


class TracedWorker(Worker):
    """Claiming, running and recording stay django-tasks-db's; only the reporting is ours."""

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
