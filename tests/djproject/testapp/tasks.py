"""Real tasks for worker tests: each one makes an outcome easy to assert from outside.

``record`` appends to a file so a test can count how many times each token ran: exactly-once
checks need a side effect that survives the worker process.
"""

from __future__ import annotations

import time

try:  # Django 6 ships tasks in core.
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport.
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]


@task()
def noop() -> None:
    """Nothing at all: measures pure worker overhead."""


@task()
def add(a: int, b: int) -> int:
    """A return value to read back from the result row."""
    return a + b


@task()
def sleep(seconds: float) -> float:
    """Keep a worker busy, for drain and graceful-stop tests."""
    time.sleep(seconds)
    return seconds


@task()
def fail(message: str) -> None:
    """Always fail, with a message the test chose, to find in the FAILED row."""
    raise ValueError(message)


@task()
def fail_with_codes(codes: list[int]) -> None:
    """Fail with a message of these code points: text that JSON arguments cannot carry into
    every database (PostgreSQL's jsonb takes neither NUL nor a lone surrogate)."""
    raise ValueError("".join(map(chr, codes)))


@task()
def record(path: str, token: str) -> str:
    """Append token + newline to path; a line per run shows duplicates and losses."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


@task()
def record_slowly(path: str, token: str, seconds: float) -> str:
    """Record the run first, then stay busy: a worker killed during the sleep leaves a recorded
    run behind, so the chaos suite can tell a legitimate re-run after a kill from a duplicate."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(token + "\n")
    time.sleep(seconds)
    return token


@task()
def use_database(path: str, token: str, seconds: float) -> int:
    """Record the run, then write and read the database until ``seconds`` pass: a task whose
    own code meets a database outage. Returns how many rows it wrote."""
    from django.db import connection

    with open(path, "a", encoding="utf-8") as f:
        f.write(token + "\n")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS testapp_note (token varchar(100))")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO testapp_note (token) VALUES (%s)", [token])
            cursor.execute("SELECT count(*) FROM testapp_note WHERE token = %s", [token])
            (written,) = cursor.fetchone()
        time.sleep(0.1)
    return int(written)


@task()
def tally(token: str, seconds: float) -> int:
    """Read, work ``seconds``, then write, in one transaction, as a search-index update does:
    the shape SQLite refuses at once ("database is locked") when another process wrote
    meanwhile, unless the transaction took the write lock at BEGIN. Needs testapp_note."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM testapp_note")
        (count,) = cursor.fetchone()
        time.sleep(seconds)
        cursor.execute("INSERT INTO testapp_note (token) VALUES (%s)", [token])
    return int(count)
