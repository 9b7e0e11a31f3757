"""The test project's Celery app, laid out as Celery's Django guide does.

The broker comes from the environment so tests pick a Redis database of their own and never
touch data another program keeps in Redis.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")

_BROKER = os.environ.get("CELERY_TEST_BROKER", "redis://127.0.0.1:6379/7")

# testapp.tasks holds django-tasks tasks, so autodiscovery (which imports "tasks") is not used.
app = Celery("djproject", broker=_BROKER, backend=_BROKER, include=["testapp.celery_tasks"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    # One message at a time per pool process: the tests reason about who runs what.
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    result_expires=600,
    # For the beat test: something due every second, so a running beat is visible in Redis.
    beat_schedule={
        "add-every-second": {"task": "testapp.celery_tasks.add", "schedule": 1.0, "args": (1, 1)}
    },
)
