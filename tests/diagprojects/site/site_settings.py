"""A small, healthy Django project: the tests copy it and append one mistake at the end.

Everything sits next to this file (the SQLite database too), so each copy is independent.
"""

import os
from importlib.util import find_spec

HERE = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "diagnostics-test-only-insecure-key"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Django 6 has django.tasks built in; on 5.2 it is the django-tasks backport.
INSTALLED_APPS = (["django_tasks"] if find_spec("django.tasks") is None else []) + [
    "django_tasks_db",
    "backends.taskworker",
    "myapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(HERE, "db.sqlite3"),
        # A web server and a worker write at once: what the SQLite finding asks for.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}
if os.environ.get("DIAG_PG"):  # a scratch PostgreSQL database made by the test itself
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DIAG_PG"],
        "HOST": "127.0.0.1",
        "PORT": os.environ.get("DIAG_PG_PORT", "5432"),
        "USER": "postgres",
    }
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "emails"]}}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "myapp.urls"
WSGI_APPLICATION = "myapp.wsgi.application"

PORT = int(os.environ.get("DIAG_PORT", "8799"))
PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {"bind": f"127.0.0.1:{PORT}", "workers": "1"},
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"queue": "default", "interval": "0.2"},
    },
}
