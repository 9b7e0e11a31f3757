"""Everything from the environment, as twelve-factor projects do; nothing here loads .env
(manage.py and wsgi.py do), so a program that imports these settings alone gets the fallbacks."""

import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = os.environ.get("DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "*").split(",")

# On Django 5.2 the tasks framework is the django-tasks backport; Django 6 has it built in.
_TASKS_APPS = ["django_tasks_db"]
if find_spec("django.tasks") is None:
    _TASKS_APPS.insert(0, "django_tasks")

INSTALLED_APPS = ["django.contrib.contenttypes", *_TASKS_APPS, "backends.taskworker", "shop"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "realsite.urls"
WSGI_APPLICATION = "realsite.wsgi.application"

# The fallback is what bit the user: without .env, a quiet SQLite file next to the code.
DATABASES = {
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "later"]}}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
