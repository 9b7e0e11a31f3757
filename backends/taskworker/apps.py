"""An optional app: a migration, and the SQLite doorbell rung by the processes that enqueue.

Its migrations add indexes that make task statistics cheap (django-tasks-db indexes READY
rows only, so counting running, recently finished or failed tasks read the whole table) and,
on PostgreSQL, the trigger that wakes listening workers the moment a task is ready. On SQLite,
a process that has this app installed rings the doorbell of the workers on this machine when
an enqueue commits (`backends.taskworker.doorbell`). Projects add ``"backends.taskworker"`` to
INSTALLED_APPS and run ``manage.py migrate``; without it backends.taskstats gives the same
numbers, more slowly, and workers wait for their next poll.
"""

from typing import Any

from django.apps import AppConfig


class ProdserverTuiConfig(AppConfig):
    name = "backends.taskworker"
    label = "prodserver_tui"
    verbose_name = "prodserver-tui"

    def ready(self) -> None:
        from django_tasks_db.compat import task_enqueued

        task_enqueued.connect(ring_doorbell, dispatch_uid="prodserver_tui_doorbell")


def ring_doorbell(sender: type, task_result: Any, **_: object) -> None:
    """Once the enqueue commits, tell SQLite workers on this machine (PostgreSQL's trigger
    tells its own). Never raises: this runs in whatever enqueued, a web request most often."""
    from django.db import connections, router, transaction
    from django_tasks_db import DatabaseBackend
    from django_tasks_db.models import DBTaskResult

    from backends.taskworker import doorbell
    from backends.taskworker.wakeup import ready_for

    if not issubclass(sender, DatabaseBackend):
        return
    alias = router.db_for_write(DBTaskResult)
    connection = connections[alias]
    if connection.vendor != "sqlite":
        return
    task = task_result.task
    message = ready_for(task_result.backend, task.queue_name, task.run_after).encode()
    database = str(connection.settings_dict["NAME"])
    transaction.on_commit(lambda: doorbell.ring(database, message), using=alias)
