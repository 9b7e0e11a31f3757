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
