"""Settings for the bundled demo: a real Django project, so the console shows real processes.

Everything lives in a per-user data folder rather than next to the code, because the package
may be installed read-only (site-packages, a wheel) and several checkouts should share nothing
by accident. ``PRODSERVER_TUI_DEMO_DIR`` overrides it, which is how tests keep runs apart.
Importing these settings writes nothing (``--demo --check`` imports them): ``tui.demo.prepare``
makes the folder (0700) and the database (0600) before the demo starts.
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path


def _data_dir() -> Path:
    """The demo's folder: explicit override, then XDG, then the XDG default under home."""
    explicit = os.environ.get("PRODSERVER_TUI_DEMO_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "prodserver-tui" / "demo"


DATA_DIR = _data_dir()
DB_FILE = DATA_DIR / "db.sqlite3"

# Demo only: this key is public, in the source. Never copy it into a real project.
SECRET_KEY = "demo-only-insecure-key-prodserver-tui-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# Django 6 ships django.tasks; on 5.2 the backport app also registers its system checks.
_TASKS_APPS = ["django_tasks_db"]
if find_spec("django.tasks") is None:
    _TASKS_APPS.insert(0, "django_tasks")

# "backends.taskworker" adds the indexes that keep task statistics fast on big tables.
INSTALLED_APPS = [*_TASKS_APPS, "backends.taskworker", "tui.demo"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "tui.demo.urls"
WSGI_APPLICATION = "tui.demo.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB_FILE,
        # Web, two workers and the load generator all write: take the write lock at BEGIN,
        # wait up to 20 s for it, and let readers run beside the writer (WAL). See README,
        # "SQLite in production".
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL;",
        },
    }
}

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "emails"],
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PORT = int(os.environ.get("PRODSERVER_TUI_DEMO_PORT", "8765"))

PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {"bind": f"127.0.0.1:{PORT}", "workers": "2", "access-logfile": "-"},
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"queue": "default", "verbosity": "1"},
    },
    "emails": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"queue": "emails"},
    },
    "load": {
        "BACKEND": "backends.command.Command",
        # The console gives children DJANGO_SETTINGS_MODULE and PYTHONPATH.
        "ARGS": [sys.executable, "-m", "django", "demo_load"],
    },
}
