"""One database for everyone: the task workers, the web servers and the console's statistics.

On a real project gunicorn imported ``wsgi.py``, which loaded ``.env`` (``DATABASE_URL``:
PostgreSQL), while the worker and the statistics used the SQLite fallback: 77 tasks sat READY,
the header said ``ready 0`` and nothing noticed. Whatever the cause, two processes on two
databases is an error worth one line naming both:

* at run time (`check_reported`): each task worker says at start which database it uses
  (``backends.dbident``), compared with what the console's statistics read and with what the
  web servers use (the settings as the console loaded them);
* at setup and in ``--check`` (`check_databases`): an entry that gets settings of its own
  (``--settings`` in ARGS, DJANGO_SETTINGS_MODULE or any variable in its environment the
  console does not have) has them evaluated in a small process, before anything starts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from backends import dbident
from backends.base import ConfigError, Launch
from backends.control import ENV as CONTROL_ENV
from backends.dbident import Database
from backends.diagnostics.finding import EntryLike, Finding

CODE = "database-mismatch"
APART = "so tasks are enqueued in one and looked for in the other"
FIX = (
    "start every process with the same settings and environment: the same "
    "DJANGO_SETTINGS_MODULE and DATABASE_URL (or the .env file that sets it); an entry's own "
    "--settings or environment must point at the same database"
)
# What every child's environment holds whatever the entry says (``Project.child_env``).
_PLUMBING = frozenset({"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONUNBUFFERED", CONTROL_ENV})
EVALUATE_TIMEOUT = 15.0  # settings that take longer to import are not evaluated
# Run in the entry's environment: its settings' database, reported as a worker reports it.
_EVALUATE = (
    "import os, sys\n"
    "from django.conf import settings\n"
    "from backends import dbident\n"
    "params = settings.DATABASES.get(sys.argv[1]) or {}\n"
    "print(dbident.report_line(dbident.describe(params, sys.argv[1]), os.getpid()))\n"
)


def reported(lines: Sequence[str], pid: int | None) -> Database | None:
    """The last report in a batch of an entry's output lines (its main process is ``pid``)."""
    found = None
    for line in lines:
        if dbident.MARK in line:
            found = dbident.parse(line, pid) or found
    return found


def check_reported(reports: Mapping[str, Database], using: str = "default") -> list[Finding]:
    """At run time: each worker's report against the settings the console loaded, for the
    statistics (alias ``using``) and for the web servers (the alias the worker reported)."""
    if not reports:
        return []
    from django.conf import settings

    databases = getattr(settings, "DATABASES", None) or {}
    stats = dbident.describe(databases.get(using) or {}, using)
    found = []
    for entry, theirs in sorted(reports.items()):
        web = dbident.describe(databases.get(theirs.alias) or {}, theirs.alias)
        stats_differ, web_differ = not theirs.same(stats), not theirs.same(web)
        if not (stats_differ or web_differ):
            continue
        if not web_differ:
            what = f"the console's task statistics read {stats.shown()}, so they show none of them"
        elif not stats_differ or web.same(stats):
            also = " and the console's task statistics" if stats_differ else ""
            what = f"the web servers{also} use {web.shown()}, {APART}"
        else:
            what = (
                f"the web servers use {web.shown()} and the console's task statistics read "
                f"{stats.shown()}, {APART}"
            )
        what = f"{entry} uses {theirs.shown()}, but {what}"
        found.append(Finding("error", CODE, entry, what, FIX))
    return found


def check_databases(
    settings: Any, entries: Sequence[EntryLike], using: str = "default"
) -> list[Finding]:
    """At setup: entries whose own settings or environment give them another database than
    the console's. Only those are evaluated (a process each); the others have the console's."""
    if not any(e.backend is not None and e.backend.kind == "tasks" for e in entries):
        return []  # no statistics, no worker: nothing to meet in a database
    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    ours = dbident.describe((getattr(settings, "DATABASES", None) or {}).get(using) or {}, using)
    found = []
    for entry in entries:
        backend = entry.backend
        if backend is None or not backend.runs_django:
            continue
        try:
            launch = backend.launch()
        except ConfigError:
            continue  # --check prints the entry's own error
        theirs_module, why = own_settings(launch, module)
        if not why:
            continue
        theirs = evaluate(launch, theirs_module, using, backend.project.python)
        if theirs is None or theirs.same(ours):
            continue
        what = (
            f"{entry.name} will use {theirs.shown()} ({'; '.join(why)}), but the console's "
            f"task statistics and the settings it loaded ({module}) use {ours.shown()}, {APART}"
        )
        found.append(Finding("error", CODE, entry.name, what, FIX))
    return found


def own_settings(launch: Launch, module: str) -> tuple[str, list[str]]:
    """(the settings module the entry will load, why they may differ from the console's):
    ``--settings`` in its command line, its DJANGO_SETTINGS_MODULE, variables of its own.
    Names only: a value may be a secret."""
    why = []
    theirs = launch.env.get("DJANGO_SETTINGS_MODULE", module)
    if theirs != module:
        why.append(f"its environment sets DJANGO_SETTINGS_MODULE={theirs}")
    option = _settings_option(launch.argv)
    if option and option != module:
        theirs = option
        why.append(f"its ARGS give --settings={option}")
    changed = sorted(
        key
        for key, value in launch.env.items()
        if key not in _PLUMBING and os.environ.get(key) != value
    )
    if changed:
        why.append(f"its environment sets {', '.join(changed)}")
    return theirs, why


def evaluate(launch: Launch, module: str, using: str, python: str) -> Database | None:
    """The database ``module`` gives alias ``using`` in the entry's environment and folder:
    its settings imported in a process of their own (Django loads settings once per process).
    None when they do not import, or not in time: the entry will say why when it starts."""
    env = {**os.environ, **launch.env, "DJANGO_SETTINGS_MODULE": module}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # --check writes nothing
    try:
        proc = subprocess.Popen(
            [python, "-c", _EVALUATE, using],
            cwd=launch.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError:
        return None
    try:
        out, _ = proc.communicate(timeout=EVALUATE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return reported(out.splitlines()[-1:], proc.pid) if proc.returncode == 0 else None


def _settings_option(argv: Sequence[str]) -> str | None:
    """The last ``--settings X`` or ``--settings=X`` of a command line (manage.py's option)."""
    found = None
    for i, arg in enumerate(argv):
        if arg.startswith("--settings="):
            found = arg.partition("=")[2]
        elif arg == "--settings" and i + 1 < len(argv):
            found = argv[i + 1]
    return found
