"""Celery tasks for worker tests: each one makes an outcome easy to assert from outside."""

from __future__ import annotations

import os
import time

from djproject.celery import app


@app.task
def add(a: int, b: int) -> int:
    """A return value to read back from the result backend."""
    return a + b


@app.task
def fail(message: str) -> None:
    """Always fail, with a message the test chose, to find in the result and the log."""
    raise ValueError(message)


@app.task
def sleep(seconds: float) -> int:
    """Keep a pool process busy; returns its pid, so a test sees which process ran it."""
    time.sleep(seconds)
    return os.getpid()
