"""An optional app whose only job is a migration: indexes that make task statistics cheap.

django-tasks-db indexes READY rows only, so counting running, recently finished or failed tasks
reads the whole result table. Projects add ``"backends.taskworker"`` to INSTALLED_APPS and run
``manage.py migrate``; without it backends.taskstats gives the same numbers, more slowly.
"""

from django.apps import AppConfig


class ProdserverTuiConfig(AppConfig):
    name = "backends.taskworker"
    label = "prodserver_tui"
    verbose_name = "prodserver-tui"
