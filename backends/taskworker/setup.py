"""What every worker process does before touching the database: Django, connections, logging."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("backends.taskworker")

# verbosity -> (our logger's level, django-tasks' own loggers' level)
_LEVELS = {
    0: (logging.ERROR, logging.CRITICAL),
    1: (logging.INFO, logging.CRITICAL),
    2: (logging.DEBUG, logging.INFO),
    3: (logging.DEBUG, logging.DEBUG),
}


#: Seconds a connection of ours waits for SQLite's write lock (Python's default is 5).
SQLITE_BUSY_TIMEOUT = 20.0


def setup_django() -> None:
    """Persistent, health-checked connections, whatever CONN_MAX_AGE says; on SQLite,
    immediate transactions whatever OPTIONS say, and a busy timeout.

    With Django's default CONN_MAX_AGE=0 a worker reconnects for every task, which cut
    db_worker's throughput 3x on PostgreSQL. On SQLite a transaction begun with a plain
    ``BEGIN`` (Django's default) reads first and asks for the write lock at its first write,
    which SQLite refuses at once, busy timeout or not, while another process writes: tasks
    failed with "database is locked" beside a web server (bench/sqlite_locking.py).
    ``IMMEDIATE`` takes the lock at ``BEGIN``, where the busy timeout waits for it. Must run
    before any connection opens.
    """
    from django.conf import settings

    for alias in settings.DATABASES.values():
        alias["CONN_MAX_AGE"] = None
        alias["CONN_HEALTH_CHECKS"] = True
    import django

    django.setup()
    from django.db import connections

    for connection in connections.all(initialized_only=False):
        if connection.vendor == "sqlite":
            sqlite_writes_wait(connection.settings_dict.setdefault("OPTIONS", {}))


def sqlite_writes_wait(options: dict[str, object]) -> None:
    """Immediate transactions (EXCLUSIVE, stricter, is kept), and our busy timeout unless
    OPTIONS set one: Python's unsaid 5 s is no choice, a timeout someone wrote is (a short
    one shows a lock held too long in the pane sooner)."""
    if str(options.get("transaction_mode") or "").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
        options["transaction_mode"] = "IMMEDIATE"
    options.setdefault("timeout", SQLITE_BUSY_TIMEOUT)


def report_database() -> None:
    """One line for the console (``backends.dbident``): the database the tasks are claimed
    from, as these settings and this environment make it, to compare with its own."""
    from django.db import connections, router
    from django_tasks_db.models import DBTaskResult

    from backends import dbident

    alias = router.db_for_write(DBTaskResult)
    database = dbident.describe(connections[alias].settings_dict, alias)
    print(dbident.report_line(database, os.getpid()), flush=True)


def setup_logging(verbosity: int) -> None:
    """Our own handler on stdout: with DEBUG=False and Django's default LOGGING the
    django-tasks lines would be dropped and the pane would show nothing."""
    ours, theirs = _LEVELS[verbosity]
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
    for name, level in (
        ("backends.taskworker", ours),
        ("django_tasks_db", theirs),
        ("django.tasks", theirs),
        ("django_tasks", theirs),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
