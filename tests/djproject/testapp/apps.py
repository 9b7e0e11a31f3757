"""The app that holds the test tasks."""

import os

from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "testapp"

    def ready(self) -> None:
        """With DJPROJECT_READY_LOG set, note which process loaded the project's apps: the
        console must never be one of them (its statistics helper is)."""
        log = os.environ.get("DJPROJECT_READY_LOG")
        if log:
            with open(log, "a", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
