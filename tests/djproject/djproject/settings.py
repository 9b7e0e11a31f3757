"""Settings for the test project: a plain Django layout, the kind the console must find and run.

The database path and port come from the environment so every test gets its own copy and
concurrent runs never share a SQLite file or a listening socket.
"""

import json
import os
from importlib.util import find_spec
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "test-only-insecure-key-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJPROJECT_ALLOWED_HOSTS", "*").split(",")

# On Django 5.2 the tasks framework is the django-tasks backport; Django 6 has it built in.
_TASKS_APPS = ["django_tasks_db"]
if find_spec("django.tasks") is None:
    _TASKS_APPS.insert(0, "django_tasks")

INSTALLED_APPS = [*_TASKS_APPS, "backends.taskworker", "testapp"]

MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]

ROOT_URLCONF = "djproject.urls"
WSGI_APPLICATION = "djproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJPROJECT_DB", str(BASE_DIR / "db.sqlite3")),
        # Several workers write at once in tests: wait for SQLite's lock instead of failing.
        # A test of lock faults sets a shorter wait, to see what happens when it runs out.
        "OPTIONS": {"timeout": float(os.environ.get("DJPROJECT_SQLITE_TIMEOUT", "20"))},
    }
}
if "DJPROJECT_SQLITE_OPTIONS" in os.environ:  # a test of SQLite's locking sets them all (JSON)
    DATABASES["default"]["OPTIONS"] = json.loads(os.environ["DJPROJECT_SQLITE_OPTIONS"])
if os.environ.get("DJPROJECT_PG"):  # a scratch PostgreSQL database made by the test itself
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DJPROJECT_PG"],
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("DJPROJECT_PG_PORT", "5432"),  # a test's private cluster: its own
        "USER": os.environ.get("DJPROJECT_PG_USER", "postgres"),
    }

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "other"],
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {
            "bind": "127.0.0.1:" + os.environ.get("DJPROJECT_PORT", "8766"),
            "workers": "2",
        },
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        # A test may give the worker other ARGS (its processes x threads), as JSON.
        "ARGS": json.loads(os.environ.get("DJPROJECT_WORKER_ARGS", '{"queue": "default"}')),
    },
}
