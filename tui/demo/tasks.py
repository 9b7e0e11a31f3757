"""Demo tasks: a mix of fast, slow, flaky and per-queue work, so the console has something to show.

Each one does real (if small) work through the database backend, so queue depth, throughput
and failures in the console are genuine, not simulated.
"""

from __future__ import annotations

import random
import time

try:  # Django 6 ships tasks in core.
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport.
    from django_tasks import task  # type: ignore[no-redef,unused-ignore]

# A few percent of flaky() calls fail, enough to see failures without drowning the successes.
FAILURE_RATE = 0.05


@task()
def fast(n: int = 2000) -> int:
    """Sum of squares below n: a task that finishes in well under a millisecond."""
    return sum(i * i for i in range(n))


@task()
def slow(seconds: float | None = None) -> float:
    """Sleep 1-3 s, so a worker is visibly busy and the queue can build up behind it."""
    duration = seconds if seconds is not None else random.uniform(1.0, 3.0)
    time.sleep(duration)
    return round(duration, 3)


@task()
def flaky(n: int = 100) -> int:
    """Fail now and then, so FAILED rows and worker tracebacks appear in the console."""
    if random.random() < FAILURE_RATE:
        raise ValueError(f"flaky task failed on purpose (about {FAILURE_RATE:.0%} of runs do)")
    return n * 2


@task(queue_name="emails")
def send_email(to: str, subject: str) -> str:
    """Pretend to send an email: on its own queue, so a second worker entry has real work."""
    time.sleep(0.2)
    return f"sent {subject!r} to {to}"
