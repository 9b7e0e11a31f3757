"""Setup checks: what the settings and PRODUCTION_PROCESSES say, the migration state, and the
listening sockets of this host, and the database connections the entries may hold against
the server's slots (connections.py). Run once, at start and by ``--check``. The seed
documentation's snippet is the model of what goes wrong: ``"django-tasks"`` in
INSTALLED_APPS, no ``TASKS``, ``django.contrib.tasks``.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from backends.base import flat
from backends.diagnostics.connections import check_connections
from backends.diagnostics.database import check_databases
from backends.diagnostics.finding import EntryLike, Finding
from backends.diagnostics.runtime import Worker, worker
from backends.diagnostics.sqlite import check_sqlite
from backends.ports import WILDCARD_HOSTS, describe, listening, overlap

TASKS_APP = "django_tasks_db"
TASKS_LABEL = "django_tasks_database"  # django_tasks_db's app label (and its table prefix)
# Names people put in INSTALLED_APPS when they mean django_tasks_db (the seed docs' among them).
TASKS_APP_MISSPELLINGS = frozenset(
    {"django-tasks", "django-tasks-db", "django_tasks_database", "django_tasks.backends.database"}
)
EXAMPLE_TASKS = (
    'TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}'
)
# What Django allows when DEBUG is on and ALLOWED_HOSTS is empty.
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]
MIGRATE = "run: python manage.py migrate"


def check_setup(
    settings: Any, entries: Sequence[EntryLike], migrates_itself: bool = False
) -> list[Finding]:
    """Every setup check; the database ones only when Django can load the apps at all.
    A project that ``migrates_itself`` at start (the demo) has no migration to report.

    Blocking (imports, database, /proc): run it off the event loop.
    """
    found = [
        *_guarded(check_entry_keys, entries),
        *_guarded(check_apps, settings, entries),
        *_guarded(check_task_code, settings),
        *_guarded(check_tasks_settings, settings, entries),
        *_guarded(check_servers, settings, entries),
        *_guarded(check_ports, entries),
        *_guarded(check_databases, settings, entries),
    ]
    if not any(f.code in UNLOADABLE for f in found):
        database = [] if migrates_itself else _guarded(check_migrations)
        found += database
        if not any(f.code in NO_DATABASE for f in database):
            found += _guarded(check_connections, entries)
            found += _guarded(check_sqlite, settings, entries)
    return found


def _guarded(check: Callable[..., list[Finding]], *args: Any) -> list[Finding]:
    """Settings are user code of any shape: a check that trips on one says so in one finding
    and the others still run, instead of a traceback in place of the whole report."""
    try:
        return check(*args)
    except Exception as e:
        return [
            Finding(
                "warning",
                "check-failed",
                None,
                f"{check.__name__} could not finish ({type(e).__name__}: {flat(e)})",
                "run python manage.py check for Django's own view; the other checks ran",
                topic=check.__name__,
            )
        ]


def check_apps(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """INSTALLED_APPS that cannot load (a traceback at every start), and a missing tasks app."""
    apps = [str(app) for app in getattr(settings, "INSTALLED_APPS", [])]
    found: list[Finding] = []
    misspelled = [app for app in apps if app in TASKS_APP_MISSPELLINGS and not _importable(app)]
    for app in apps:
        if app in misspelled or _importable(app):
            continue
        if app == "django.contrib.tasks":
            found.append(
                Finding(
                    "error",
                    "contrib-tasks",
                    None,
                    'INSTALLED_APPS has "django.contrib.tasks", which does not exist, '
                    "so Django cannot start",
                    f'remove it and add "{TASKS_APP}"; tasks come from '
                    '"from django.tasks import task" (django_tasks on Django 5.2)',
                )
            )
        else:
            found.append(
                Finding(
                    "error",
                    "app-not-importable",
                    None,
                    f'INSTALLED_APPS has "{app}", which cannot be imported, so Django cannot start',
                    "install the package that provides it or correct the name",
                )
            )
    has_tasks_app = any(app == TASKS_APP or app.startswith(TASKS_APP + ".") for app in apps)
    if not has_tasks_app and (misspelled or _workers(entries) or _db_aliases(settings)):
        if misspelled:
            what = (
                f'INSTALLED_APPS has "{misspelled[0]}", which is not a Python module, '
                f'instead of "{TASKS_APP}"'
            )
            fix = f'replace "{misspelled[0]}" with "{TASKS_APP}", then {MIGRATE}'
        else:
            who = ", ".join(name for name, _ in _workers(entries)) or "TASKS"
            what = f"{TASKS_APP} is not in INSTALLED_APPS, so {who} cannot store or run tasks"
            fix = (
                f'add "{TASKS_APP}" to INSTALLED_APPS (pip install django-tasks-db), then {MIGRATE}'
            )
        found.append(Finding("error", "tasks-app-missing", None, what, fix))
    return found


TASK_MODULES = frozenset({"django.tasks", "django_tasks", "django.contrib.tasks"})
IMPORT_TASK = '"from django.tasks import task" ("from django_tasks import task" on Django 5.2)'


def check_task_code(settings: Any) -> list[Finding]:
    """The seed docs' code mistakes, in each installed app's ``tasks.py``, read not imported:
    ``from django.contrib.tasks import task`` (no such module) and ``my_task.delay()``
    (Celery's spelling; a Django task has ``.enqueue()``)."""
    found: list[Finding] = []
    for app in getattr(settings, "INSTALLED_APPS", []):
        path = _tasks_file(str(app))
        if path is None:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable or broken: importing it will say so, better than we can
        found += _task_code(f"{app}.tasks", tree)
    return found


def _task_code(module: str, tree: ast.Module) -> list[Finding]:
    found: list[Finding] = []
    imports = [
        (
            node.lineno,
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [alias.name for alias in node.names],
        )
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    from_tasks = any(name in TASK_MODULES for _, names in imports for name in names)
    for line, names in imports:
        if any(name.startswith("django.contrib.tasks") for name in names):
            found.append(
                Finding(
                    "error",
                    "contrib-tasks-import",
                    None,
                    f"{module} imports django.contrib.tasks (line {line}), which does "
                    "not exist, so every import of its tasks fails",
                    f"write {IMPORT_TASK}",
                )
            )
    tasks = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(_is_task_decorator(d) for d in node.decorator_list)
    }
    for node in ast.walk(tree):
        if (
            from_tasks
            and isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "delay"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in tasks
        ):
            name = node.func.value.id
            found.append(
                Finding(
                    "error",
                    "task-delay",
                    None,
                    f"{module} calls {name}.delay() (line {node.lineno}), which a Django task "
                    "does not have (that is Celery's spelling)",
                    f"call {name}.enqueue(...) instead",
                    topic=f"{module}:{node.lineno}",
                )
            )
    return found


def _is_task_decorator(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "task") or (
        isinstance(target, ast.Attribute) and target.attr == "task"
    )


def _tasks_file(app: str) -> Path | None:
    """Where an installed app's tasks module lives, without importing the app."""
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(app)
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / "tasks.py"
            return path if path.is_file() else None
    return None


# A finding with one of these codes means django.setup() would fail: skip the database checks.
UNLOADABLE = frozenset({"contrib-tasks", "app-not-importable", "tasks-app-missing"})
# And these, that the database cannot be read: no point asking it about its connections.
NO_DATABASE = frozenset({"django-setup-failed", "database-error", "migrations-broken"})


def check_tasks_settings(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """Each task worker reads TASKS[its backend]: that must exist, be the database backend,
    and list the queues the worker serves."""
    found: list[Finding] = []
    configured = _tasks_setting(settings)
    for name, served in _workers(entries):
        alias = served.backend
        params = configured.get(alias) if configured else None
        if configured is None:
            found.append(
                Finding(
                    "error",
                    "tasks-setting-missing",
                    name,
                    "TASKS is not set, so .enqueue() runs each task at once inside the "
                    f"caller (Django's ImmediateBackend) and {name} never gets one",
                    f"set {EXAMPLE_TASKS}",
                )
            )
            continue
        if not isinstance(params, dict):
            found.append(
                Finding(
                    "error",
                    "tasks-backend-missing",
                    name,
                    f'{name} reads TASKS["{alias}"], which is not set',
                    f'add TASKS["{alias}"] = {{"BACKEND": "django_tasks_db.DatabaseBackend"}} '
                    'or give the worker the right "backend" in ARGS',
                )
            )
            continue
        path = str(params.get("BACKEND", ""))
        if not _is_db_backend(path):
            found.append(
                Finding(
                    "error",
                    "tasks-backend-not-db",
                    name,
                    f'TASKS["{alias}"] uses {path or "no BACKEND"}, so tasks never reach the '
                    f"database {name} reads",
                    f'set TASKS["{alias}"]["BACKEND"] = "django_tasks_db.DatabaseBackend"',
                )
            )
            continue
        queues = [str(q) for q in params.get("QUEUES") or ["default"]]
        for queue in sorted((served.queues or frozenset()) - set(queues)):
            found.append(
                Finding(
                    "warning",
                    "queue-not-configured",
                    name,
                    f'{name} serves queue "{queue}", which TASKS["{alias}"]["QUEUES"] '
                    f"({', '.join(queues)}) does not list, so nothing can be enqueued there",
                    f'add "{queue}" to TASKS["{alias}"]["QUEUES"] or fix the "queue" in ARGS',
                    topic=queue,
                )
            )
    return found


def check_servers(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """Web servers bound everywhere with DEBUG on, and ALLOWED_HOSTS that refuse the address."""
    from django.http.request import validate_host

    debug = bool(getattr(settings, "DEBUG", False))
    allowed = list(getattr(settings, "ALLOWED_HOSTS", []) or [])
    effective = allowed or (DEBUG_HOSTS if debug else [])
    found: list[Finding] = []
    for name, host, port in _binds(entries):
        shown = f"[{host}]" if ":" in host else host
        if host in WILDCARD_HOSTS:
            if debug:
                found.append(
                    Finding(
                        "warning",
                        "debug-public-bind",
                        name,
                        f"{name} listens on every interface ({shown or '*'}:{port}) with "
                        "DEBUG = True, so anyone who reaches it sees tracebacks and settings",
                        "bind 127.0.0.1 while DEBUG is on, or set DEBUG = False",
                    )
                )
            if not effective:
                found.append(
                    Finding(
                        "warning",
                        "allowed-hosts-rejects",
                        name,
                        "ALLOWED_HOSTS is empty with DEBUG = False, so every request to "
                        f"{name} gets 400 Bad Request",
                        "list the names clients use in ALLOWED_HOSTS",
                    )
                )
            continue
        if not validate_host(shown, effective):
            found.append(
                Finding(
                    "warning",
                    "allowed-hosts-rejects",
                    name,
                    f"ALLOWED_HOSTS {allowed} rejects {shown}, the address {name} serves on, "
                    f"so requests to http://{shown}:{port} get 400 Bad Request",
                    f'add "{shown}" (or the name clients use) to ALLOWED_HOSTS',
                )
            )
    return found


def check_entry_keys(entries: Sequence[EntryLike]) -> list[Finding]:
    """A key the backend does not read is almost always a typo ("ARG", "args", "GRACE_S"):
    the entry then runs without it, silently, unless someone says so."""
    found = []
    for entry in entries:
        backend = entry.backend
        if backend is None:
            continue
        by_upper = {k.upper(): k for k in backend.keys}
        for key in backend.entry:
            if not isinstance(key, str) or key in backend.keys:
                continue
            close = difflib.get_close_matches(key.upper(), by_upper, n=1, cutoff=0.6)
            fix = (
                f'rename it to "{by_upper[close[0]]}"'
                if close
                else f"remove it; an entry of this kind reads {', '.join(sorted(backend.keys))}"
            )
            found.append(
                Finding(
                    "warning",
                    "entry-key-unknown",
                    entry.name,
                    f"{entry.name} has the key {flat(repr(key))}, which prodserver-tui "
                    "does not read, so it has no effect",
                    fix,
                    topic=key,
                )
            )
    return found


def check_ports(entries: Sequence[EntryLike]) -> list[Finding]:
    """A web server's port already taken by another program, named with its pid.

    The console's own children (a server that bound it a moment ago) are not "another
    program": anything descending from this process is skipped.
    """
    taken = listening()
    found: list[Finding] = []
    for name, host, port in _binds(entries):
        for conn in taken:
            taken_host, taken_port = tuple(conn.laddr)[:2] or ("", 0)
            if taken_port != port or not overlap(host, str(taken_host)):
                continue
            if conn.pid is not None and _ours(conn.pid):
                continue
            found.append(port_in_use(name, port, describe(conn.pid)))
            break
    return found


def port_in_use(name: str, port: int, holder: str) -> Finding:
    """The one wording of a taken port, from the setup check or from the readiness probe
    (which met ``holder`` answering in the entry's place)."""
    return Finding(
        "error",
        "port-in-use",
        name,
        f"port {port} is already in use by {holder}, so {name} cannot listen on it",
        f"stop that program or give {name} another port in its ARGS",
    )


def check_migrations(using: str = "default") -> list[Finding]:
    """Unapplied migrations, read-only (Django's own migration plan, as ``migrate --plan``).

    django_tasks_db's are an error (without its table every worker and ``.enqueue()`` fails);
    the project's other apps' a warning. Needs the app registry: calls ``django.setup()``.
    """
    from django.db import DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.loader import MigrationLoader

    from backends.django_setup import SetupFailed, setup_once
    from backends.taskstats import TABLE, diagnose_error

    try:
        setup_once()
    except SetupFailed as e:  # the project's own apps failed to load: one line, not a traceback
        return [
            Finding(
                "error",
                "django-setup-failed",
                None,
                f"Django cannot load the project's apps ({flat(e)})",
                "run python manage.py check to see the traceback, and fix that",
            )
        ]
    connection = connections[using]
    if connection.settings_dict.get("ENGINE") == "django.db.backends.dummy":
        return []  # no database configured: nothing to migrate
    try:
        if _sqlite_file_missing(connection.settings_dict):
            # Connecting would create the file: every migration is pending, no table exists.
            loader = MigrationLoader(None, ignore_no_migrations=True)
            pending = Counter(app for app, _ in loader.graph.nodes)
            tables: set[str] = set()
        else:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            pending = Counter(migration.app_label for migration, back in plan if not back)
            tables = set(connection.introspection.table_names()) if pending else set()
    except DatabaseError as e:
        what, fix = diagnose_error(e, using)
        fix = fix or f"check DATABASES['{using}'] and that the database server is running"
        return [Finding("error", "database-error", None, what, fix)]
    except Exception as e:  # a broken migration graph (a missing dependency) and the like
        return [
            Finding(
                "error",
                "migrations-broken",
                None,
                f"the migrations cannot be read ({type(e).__name__}: {flat(e)})",
                "run python manage.py migrate --plan to see the traceback, and fix that",
            )
        ]
    found: list[Finding] = []
    tasks = pending.pop(TASKS_LABEL, 0)
    if tasks:
        why = "its table is missing" if TABLE not in tables else "its table is out of date"
        found.append(
            Finding(
                "error",
                "tasks-migrations",
                None,
                f"{tasks} migration(s) of {TASKS_APP} are not applied ({why}), "
                "so workers and .enqueue() fail",
                MIGRATE,
            )
        )
    if pending:
        apps = ", ".join(f"{app} ({n})" for app, n in sorted(pending.items()))
        found.append(
            Finding(
                "warning",
                "migrations-unapplied",
                None,
                f"{sum(pending.values())} migration(s) are not applied: {apps}",
                MIGRATE,
            )
        )
    return found


def _importable(app: str) -> bool:
    """Whether an INSTALLED_APPS item names a module, or an AppConfig class in one."""
    try:
        if importlib.util.find_spec(app) is not None:
            return True
    except (ImportError, ValueError):
        pass
    module, _, attr = app.rpartition(".")
    if not module:
        return False
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False
    except Exception:  # the module exists but fails in its own way: Django will say how
        return True


def _sqlite_file_missing(params: dict[str, Any]) -> bool:
    if params.get("ENGINE") != "django.db.backends.sqlite3":
        return False
    name = str(params.get("NAME") or "")
    in_memory = name == ":memory:" or name.startswith("file:") or "mode=memory" in name
    return not in_memory and not os.path.exists(name)


def _workers(entries: Sequence[EntryLike]) -> list[tuple[str, Worker]]:
    found = []
    for entry in entries:
        w = worker(entry.name, entry.backend)
        if w is not None:
            found.append((entry.name, w))
    return found


def _tasks_setting(settings: Any) -> dict[str, Any] | None:
    """TASKS as the user wrote it; None when unset (Django's default is the in-process one)."""
    overridden = getattr(settings, "is_overridden", None)
    if callable(overridden) and not overridden("TASKS"):
        return None
    value = getattr(settings, "TASKS", None)
    return value if isinstance(value, dict) and value else None


def _db_aliases(settings: Any) -> list[str]:
    return [
        alias
        for alias, params in (_tasks_setting(settings) or {}).items()
        if isinstance(params, dict) and _is_db_backend(str(params.get("BACKEND", "")))
    ]


def _binds(entries: Sequence[EntryLike]) -> list[tuple[str, str, int]]:
    """(entry, host, port) of every web server entry that listens on TCP."""
    found = []
    for entry in entries:
        url = entry.backend.url() if entry.backend is not None else None
        if not url:
            continue
        with contextlib.suppress(ValueError):  # an address we cannot parse: nothing to say
            parts = urlsplit(url)
            host = parts.hostname if parts.hostname is not None else ""
            if parts.port is not None:
                found.append((entry.name, host, parts.port))
    return found


def _ours(pid: int) -> bool:
    """This process or one of its descendants (the console's own children)."""
    me = os.getpid()
    try:
        process = psutil.Process(pid)
        return pid == me or any(p.pid == me for p in process.parents())
    except psutil.Error:
        return False


def _is_db_backend(path: str) -> bool:
    """taskstats loads the ORM, which the console loads only when it needs it."""
    from backends.taskstats import is_db_backend

    return is_db_backend(path)
