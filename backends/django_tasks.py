"""The django-tasks database worker, as the seed documentation promises it.

django-prodserver passes ARGS straight to ``db_worker``, which has no ``--processes``,
``--threads`` or ``--queue``: the documented config crashes. This backend runs prodserver-tui's
own worker (``python -m backends.taskworker``), which makes those ARGS real and accepts every
``db_worker`` option too; the worker's own parser validates ARGS before anything starts.
"""

from __future__ import annotations

import contextlib
import io

from backends.base import MAX_GRACE, Backend, ConfigError, Knob, flags_from_dict
from backends.taskworker.cli import OptionError, parser

# db_worker options that make no sense here: dropped with a note instead of failing.
_IGNORED = {
    "reload": "use restart instead",
    "no-reload": "",
    "worker-id": "ids are host:pid:thread",
}


class DjangoTasksWorker(Backend):
    kind = "tasks"
    main_knob = "threads"
    # Absolute targets over the control channel: the master's SIGTTIN / SIGUSR1 count steps,
    # and counted signals get lost (see backends.control); it answers with its counts. Its
    # processes show in the tree too (retiring ones included), which the pane shows between.
    knobs = (
        Knob("processes", by_channel=True, children=True),
        Knob("threads", by_channel=True),
    )

    def argv(self) -> list[str]:
        options = {
            key.replace("_", "-"): value
            for key, value in self.options.items()
            if key.replace("_", "-") not in _IGNORED
        }
        args = flags_from_dict({**options, **self.scale}) + self.extra
        try:
            # --help (or -h, --he...) makes argparse print and exit: into the console's own
            # screen, and out of the console. Caught here, it is the config mistake it is.
            with contextlib.redirect_stdout(io.StringIO()):
                parsed = parser().parse_args(args)
        except OptionError as e:
            raise ConfigError(
                f"{self.name}: {e}; see: python -m backends.taskworker --help"
            ) from None
        except SystemExit:
            raise ConfigError(
                f"{self.name}: ARGS ask the worker for its help; remove that option and read "
                "it with: python -m backends.taskworker --help"
            ) from None
        if "GRACE" not in self.entry:  # the master kills at drain_timeout; this is the backstop
            self.grace = parsed.drain_timeout + 5.0
            if self.grace > MAX_GRACE:  # bounded like GRACE itself: a stop must end some day
                raise ConfigError(
                    f"{self.name}: ARGS drain-timeout must be at most {MAX_GRACE - 5:.0f} "
                    f"seconds, got {parsed.drain_timeout:g}"
                )
        return [self.project.python, "-m", "backends.taskworker", *args]

    def db_listeners(self) -> int:
        """One LISTEN connection per process (on PostgreSQL; counted wherever the slots are
        counted, which is PostgreSQL only), none with ``wake: poll``."""
        return 0 if str(self.options.get("wake", "auto")) == "poll" else self.scale["processes"]

    def notes(self) -> list[str]:
        return [
            f"ARGS {key!r} ignored: {_IGNORED[key.replace('_', '-')] or 'not needed'}"
            for key in self.options
            if key.replace("_", "-") in _IGNORED
        ]
