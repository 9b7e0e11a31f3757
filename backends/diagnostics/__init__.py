"""Django-aware diagnostics: say why tasks are not processing before the user has to ask.

Each :class:`Finding` is one thing wrong, in one sentence, with one sentence of fix, tied to
the entry it concerns (or to the whole project). Three kinds of check:

* **setup** (`check_setup`, setup.py): what the settings and PRODUCTION_PROCESSES say, plus the
  migration state and the listening sockets of this host. Run once, at start and by
  ``--check``. The seed documentation's snippet is the model of what goes wrong:
  ``"django-tasks"`` in INSTALLED_APPS, no ``TASKS``, ``django.contrib.tasks``.
* **runtime** (`Watch`, runtime.py): from each task statistics poll and which workers are up; tasks
  ready in a queue nobody serves, a backlog growing under idle workers, long waits, tasks left
  RUNNING by dead workers, failure spikes. A `Watch` keeps the little history this needs.
* **deploy** (`check_deploy`, deploy.py): Django's own ``check --deploy``, on demand, in a
  subprocess.

No UI imports here: the console, the headless mode and ``--check`` all print these.
"""

from backends.diagnostics.deploy import check_deploy
from backends.diagnostics.finding import SEVERITIES, EntryLike, Finding, Severity, diff
from backends.diagnostics.runtime import Watch, Worker, worker
from backends.diagnostics.setup import (
    check_entry_keys,
    check_migrations,
    check_ports,
    check_setup,
)

__all__ = [
    "SEVERITIES",
    "EntryLike",
    "Finding",
    "Severity",
    "Watch",
    "Worker",
    "check_deploy",
    "check_entry_keys",
    "check_migrations",
    "check_ports",
    "check_setup",
    "diff",
    "worker",
]
