"""The django-tasks database worker, started the way the seed documentation promises.

django-prodserver passes ARGS straight to ``db_worker``, which has no ``--processes`` or
``--threads`` and no ``--queue``: the documented config crashes. Here the seed's ARGS are
translated (``queue`` -> ``--queue-name``) and every other ``db_worker`` option passes through.
"""

from __future__ import annotations

from backends.base import Backend, flags_from_dict

# The seed's spelling -> db_worker's option (underscores are accepted for any option too).
_RENAMED = {"queue": "queue-name", "queues": "queue-name"}


class DjangoTasksWorker(Backend):
    kind = "tasks"
    knobs = ("processes", "threads")
    # Stop lets the running task finish: db_worker exits after it on SIGTERM.
    grace = 30.0

    def argv(self) -> list[str]:
        options: dict[str, str | int | float | None] = {}
        for key, value in self.options.items():
            if key in self.knobs:
                continue
            options[_RENAMED.get(key, key.replace("_", "-"))] = value
        # The autoreloader (db_worker's default when DEBUG) forks and restarts mid-task.
        if "reload" not in options and "no-reload" not in options:
            options["no-reload"] = None
        return self.django_command("db_worker", *flags_from_dict(options), *self.extra)

    def notes(self) -> list[str]:
        wanted = {k: v for k, v in self.scale.items() if v != 1}
        if not wanted:
            return []
        asked = ", ".join(f"{k}={v}" for k, v in wanted.items())
        return [
            f"{asked} asked, but db_worker runs 1 process x 1 thread: "
            "processes and threads are not supported yet (coming with the prodserver-tui worker)"
        ]
