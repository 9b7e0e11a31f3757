"""Django-aware diagnostics: say why tasks are not processing before the user has to ask.

Each :class:`Finding` is one thing wrong, in one sentence, with one sentence of fix, tied to
the entry it concerns (or to the whole project). Three kinds of check:

* **setup** (`check_setup`): what the settings and PRODUCTION_PROCESSES say, plus the
  migration state and the listening sockets of this host. Run once, at start and by
  ``--check``. The seed documentation's snippet is the model of what goes wrong:
  ``"django-tasks"`` in INSTALLED_APPS, no ``TASKS``, ``django.contrib.tasks``.
* **runtime** (`Watch`): from each task statistics poll and which workers are up; tasks
  ready in a queue nobody serves, a backlog growing under idle workers, long waits, tasks left
  RUNNING by dead workers, failure spikes. A `Watch` keeps the little history this needs.
* **deploy** (`check_deploy`): Django's own ``check --deploy``, on demand, in a subprocess.

No UI imports here: the console, the headless mode and ``--check`` all print these.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib
import importlib.util
import itertools
import json
import os
import subprocess
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

import psutil

from backends.base import Backend, ConfigError, Project

if TYPE_CHECKING:
    from backends.taskstats import Snapshot

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

TASKS_APP = "django_tasks_db"
TASKS_LABEL = "django_tasks_database"  # django_tasks_db's app label (and its table prefix)
# Names people put in INSTALLED_APPS when they mean django_tasks_db (the seed docs' among them).
TASKS_APP_MISSPELLINGS = frozenset(
    {"django-tasks", "django-tasks-db", "django_tasks_database", "django_tasks.backends.database"}
)
EXAMPLE_TASKS = (
    'TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}'
)
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*", ""})
# What Django allows when DEBUG is on and ALLOWED_HOSTS is empty.
DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]
MIGRATE = "run: python manage.py migrate"
CHECKLIST = "https://docs.djangoproject.com/en/stable/howto/deployment/checklist/"


@dataclass(frozen=True)
class Finding:
    """One problem: ``what`` is wrong and how to ``fix`` it, each one sentence.

    ``code`` is stable (tests, docs and users' scripts match on it); ``entry`` is the
    PRODUCTION_PROCESSES name it concerns, ``None`` for the project as a whole.
    """

    severity: Severity
    code: str
    entry: str | None
    what: str
    fix: str
    topic: str = ""  # what else tells two findings of one code apart (a queue)

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Identity across polls: the text may change (12 ready, then 13), this does not."""
        return (self.code, self.entry, self.topic)

    def line(self) -> str:
        """``severity  entry: what — fix``: the one shape ``--check`` and headless print."""
        return f"{self.severity:<7}  {self.entry or 'project'}: {self.what} — {self.fix}"


class EntryLike(Protocol):
    """A PRODUCTION_PROCESSES entry as the console holds it (``tui.project.Entry``)."""

    name: str
    backend: Backend | None


# -- setup checks ---------------------------------------------------------------------------


def check_setup(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """Every setup check; the database ones only when Django can load the apps at all.

    Blocking (imports, database, /proc): run it off the event loop.
    """
    found = [
        *_guarded(check_entry_keys, entries),
        *_guarded(check_apps, settings, entries),
        *_guarded(check_task_code, settings),
        *_guarded(check_tasks_settings, settings, entries),
        *_guarded(check_servers, settings, entries),
        *_guarded(check_ports, entries),
    ]
    if not any(f.code in UNLOADABLE for f in found):
        found += _guarded(check_migrations)
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
                f"{check.__name__} could not finish ({type(e).__name__}: {_one_line(e)})",
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


def check_tasks_settings(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """Each task worker reads TASKS[its backend]: that must exist, be the database backend,
    and list the queues the worker serves."""
    found: list[Finding] = []
    configured = _tasks_setting(settings)
    for name, worker in _workers(entries):
        alias = worker.backend
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
        for queue in sorted((worker.queues or frozenset()) - set(queues)):
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
                    f"{entry.name} has the key {_one_line(repr(key))}, which prodserver-tui "
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
    try:
        listening = [
            c for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
        ]
    except (psutil.Error, OSError):  # not allowed to list sockets here (macOS as a user)
        return []
    found: list[Finding] = []
    for name, host, port in _binds(entries):
        for conn in listening:
            taken_host, taken_port = tuple(conn.laddr)[:2] or ("", 0)
            if taken_port != port or not _overlap(host, str(taken_host)):
                continue
            if conn.pid is not None and _ours(conn.pid):
                continue
            found.append(
                Finding(
                    "error",
                    "port-in-use",
                    name,
                    f"port {port} is already in use by {_program(conn.pid)}, "
                    f"so {name} cannot listen on it",
                    f"stop that program or give {name} another port in its ARGS",
                )
            )
            break
    return found


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
                f"Django cannot load the project's apps ({_one_line(e)})",
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
                f"the migrations cannot be read ({type(e).__name__}: {_one_line(e)})",
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


# -- runtime checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """A task worker entry as the runtime checks see it: what it serves, whether it is up."""

    name: str
    backend: str  # the TASKS alias it reads
    queues: frozenset[str] | None  # None: every queue ("*")
    excluded: frozenset[str]
    up: bool  # starting or running: it will take tasks

    def serves(self, backend: str, queue: str) -> bool:
        if backend != self.backend or queue in self.excluded:
            return False
        return self.queues is None or queue in self.queues


def worker(name: str, backend: Backend | None, up: bool = False) -> Worker | None:
    """The Worker an entry runs, read from the worker's own option parser; None if not one."""
    if backend is None or backend.kind != "tasks":
        return None
    from backends.taskworker.cli import OptionError, parser

    try:
        options = parser().parse_args(backend.argv()[3:])  # after: python -m backends.taskworker
    except (ConfigError, OptionError):
        return None
    queues = {q.strip() for q in str(options.queue_name).split(",") if q.strip()}
    excluded = {q.strip() for q in str(options.exclude_queues).split(",") if q.strip()}
    return Worker(
        name=name,
        backend=str(options.backend_name),
        queues=None if "*" in queues else frozenset(queues),
        excluded=frozenset(excluded),
        up=up,
    )


class Watch:
    """Runtime checks over successive statistics polls, with the small history they need.

    Memory is bounded: a few samples per queue, covering ``grow_for`` seconds. Call `check`
    from the thread that polled (it may read the database: stuck tasks every ``stuck_every``
    seconds, the last finished tasks only when something failed in the last minute).
    """

    def __init__(
        self,
        *,
        grow_for: float = 30.0,
        wait_limit: float = 60.0,
        unserved_for: float = 5.0,
        stuck_every: float = 30.0,
        spike_share: float = 0.2,
        spike_of: int = 100,
        spike_min: int = 10,
        using: str = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grow_for = grow_for
        self.wait_limit = wait_limit
        self.unserved_for = unserved_for
        self.stuck_every = stuck_every
        self.spike_share = spike_share
        self.spike_of = spike_of
        self.spike_min = spike_min
        self.using = using
        self.clock = clock
        self._ready: dict[tuple[str, str], deque[tuple[float, int, int]]] = {}
        self._unserved_since: dict[tuple[str, str], float] = {}
        self._stuck: list[Finding] = []
        self._stuck_at: float | None = None
        self.last: list[Finding] = []

    def check(self, stats: Snapshot, workers: Sequence[Worker]) -> list[Finding]:
        """This poll's findings; a poll that failed keeps the last ones (the header says why)."""
        if stats.error:
            return self.last
        now = self.clock()
        self.last = [
            *self._unserved(stats, workers, now),
            *self._growing(stats, workers, now),
            *self._waiting(stats),
            *self._stuck_tasks(workers, now),
            *self._failing(stats, workers),
        ]
        return self.last

    def _unserved(self, stats: Snapshot, workers: Sequence[Worker], now: float) -> list[Finding]:
        found = []
        for q in stats.queues:
            key = (q.backend, q.queue)
            servers = [w for w in workers if w.serves(q.backend, q.queue)]
            if not q.ready or any(w.up for w in servers):
                self._unserved_since.pop(key, None)
                continue
            since = self._unserved_since.setdefault(key, now)
            if now - since < self.unserved_for:  # a restart is not an outage
                continue
            could = servers[0].name if servers else None
            fix = (
                f"start {could}, which serves this queue"
                if could
                else "add a DjangoTasksWorker entry to PRODUCTION_PROCESSES with "
                f'ARGS {{"queue": "{q.queue}"}}'
            )
            found.append(
                Finding(
                    "error",
                    "queue-unserved",
                    could,
                    f'queue "{q.queue}" has {q.ready} task(s) ready and no running worker '
                    "takes them",
                    fix,
                    topic=q.queue,
                )
            )
        return found

    def _growing(self, stats: Snapshot, workers: Sequence[Worker], now: float) -> list[Finding]:
        """Ready tasks piling up while the workers that serve the queue run none."""
        found = []
        for q in stats.queues:
            history = self._ready.setdefault((q.backend, q.queue), deque(maxlen=512))
            history.append((now, q.ready, q.running))
            while len(history) > 2 and now - history[1][0] >= self.grow_for:
                history.popleft()  # keep one sample at least grow_for old, no more
            up = [w for w in workers if w.up and w.serves(q.backend, q.queue)]
            first_at, first, _ = history[0]
            samples = list(history)
            if (
                up
                and now - first_at >= self.grow_for
                and q.ready > first
                and all(b[1] >= a[1] for a, b in itertools.pairwise(samples))
                and all(running == 0 for _, _, running in samples)
            ):
                found.append(
                    Finding(
                        "warning",
                        "ready-growing",
                        up[0].name,
                        f'queue "{q.queue}" grew from {first} to {q.ready} ready task(s) in '
                        f"{now - first_at:.0f} s while {up[0].name} ran none",
                        f"read {up[0].name}'s log: a worker that is up but claims nothing is "
                        "frozen, hung, or cannot lock the database (SQLite), then restart it",
                        topic=q.queue,
                    )
                )
        return found

    def _waiting(self, stats: Snapshot) -> list[Finding]:
        wait = stats.oldest_ready_wait
        if wait is None or wait <= self.wait_limit:
            return []
        return [
            Finding(
                "warning",
                "tasks-waiting",
                None,
                f"the oldest ready task has waited {_duration(wait)} "
                f"(more than {_duration(self.wait_limit)})",
                "add threads or processes to the workers of its queue (+ or S in the "
                "console), or start the ones that are down",
            )
        ]

    def _stuck_tasks(self, workers: Sequence[Worker], now: float) -> list[Finding]:
        """Tasks RUNNING for a dead worker of this host; a table scan without the optional
        index, so looked for every ``stuck_every`` seconds only."""
        if self._stuck_at is not None and now - self._stuck_at < self.stuck_every:
            return self._stuck
        from backends.taskworker.recovery import find_stuck

        self._stuck_at = now
        stuck = find_stuck(self.using)
        self._stuck = []
        if stuck:
            first = stuck[0]
            owner = next((w.name for w in workers if w.serves(w.backend, first.queue)), None)
            self._stuck = [
                Finding(
                    "warning",
                    "tasks-stuck",
                    owner,
                    f"{len(stuck)} task(s) are RUNNING for a worker that died "
                    f"({first.reason}), e.g. {first.task_path}",
                    "requeue or fail them in the task panel (t); a worker started on this "
                    "host recovers them too",
                )
            ]
        return self._stuck

    def _failing(self, stats: Snapshot, workers: Sequence[Worker]) -> list[Finding]:
        """More than ``spike_share`` of the last ``spike_of`` finished tasks failed.

        The last finished tasks are read only when something failed in the last minute:
        a healthy queue costs no query.
        """
        if not any(q.failed_1m for q in stats.queues):
            return []
        recent = _last_finished(self.spike_of, self.using)
        failed = [row for row in recent if row[0] == "FAILED"]
        if len(recent) < self.spike_min or len(failed) <= self.spike_share * len(recent):
            return []
        (path, queue), _ = Counter((row[1], row[3]) for row in failed).most_common(1)[0]
        exception, times = Counter(row[2] for row in failed).most_common(1)[0]
        owner = next((w.name for w in workers if w.serves(w.backend, queue)), None)
        return [
            Finding(
                "error",
                "tasks-failing",
                owner,
                f"{len(failed)} of the last {len(recent)} finished tasks failed, mostly "
                f"{path}, most often with {exception.rpartition('.')[2]} ({times}x)",
                "read a traceback in the task panel (t) and fix the task or what it calls",
                topic=queue,
            )
        ]


def _last_finished(limit: int, using: str) -> list[tuple[str, str, str, str]]:
    """(status, task path, exception class, queue) of the latest finished tasks."""
    from django_tasks_db.models import DBTaskResult

    rows = (
        DBTaskResult.objects.using(using)
        .filter(status__in=("SUCCESSFUL", "FAILED"), finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("status", "task_path", "exception_class_path", "queue_name")[:limit]
    )
    return [(str(s), str(p), str(e or ""), str(q)) for s, p, e, q in rows]


# -- check --deploy -------------------------------------------------------------------------

# Runs in the project's own interpreter and environment: prints Django's check messages as JSON.
_DEPLOY_SCRIPT = """
import json, django
from django.core import checks
django.setup()
messages = checks.run_checks(include_deployment_checks=True)
print(json.dumps([
    {"level": m.level, "id": m.id or "", "msg": str(m.msg), "hint": str(m.hint or ""),
     "obj": "" if m.obj is None else str(m.obj)}
    for m in messages if not m.is_silenced()
]))
"""


def check_deploy(project: Project, timeout: float = 120.0) -> list[Finding]:
    """``manage.py check --deploy`` as findings, run in a fresh process of the project.

    A subprocess, not this process: the checks import every URLconf and model and may run
    user code (their own checks) that can hang, exit or print; the console must survive
    all of it, and a fresh process sees the code as it is now, not as it was at start.
    """
    try:
        done = subprocess.run(
            [project.python, "-c", _DEPLOY_SCRIPT],
            cwd=project.base_dir,
            env={**os.environ, **project.child_env()},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return [_deploy_failed(f"could not run the checks ({_one_line(e)})")]
    try:
        messages = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [_deploy_failed(f"the checks crashed ({_one_line(tail)})")]
    return [_from_check(m) for m in messages]


def _from_check(message: dict[str, Any]) -> Finding:
    from django.core.checks import ERROR, WARNING

    level = int(message["level"])
    severity: Severity = "error" if level >= ERROR else "warning" if level >= WARNING else "info"
    where = f"{message['obj']}: " if message["obj"] and message["obj"] != "?" else ""
    what = f"{where}{_one_line(message['msg'], 400)}"
    fix = _one_line(message["hint"], 400) or f"see Django's deployment checklist, {CHECKLIST}"
    return Finding(severity, message["id"] or "check", None, what, fix)


def _deploy_failed(why: str) -> Finding:
    return Finding(
        "error",
        "deploy-check-failed",
        None,
        f"manage.py check --deploy did not finish: {why}",
        "run python manage.py check --deploy to see why",
    )


# -- helpers --------------------------------------------------------------------------------


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


def _is_db_backend(path: str) -> bool:
    from backends.taskstats import DB_BACKENDS, _is_db_backend

    return path in DB_BACKENDS or _is_db_backend(path)


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


def _overlap(wanted: str, taken: str) -> bool:
    """Whether binding ``wanted`` collides with a socket listening on ``taken``."""
    return wanted in WILDCARD_HOSTS or taken in WILDCARD_HOSTS or wanted == taken


def _ours(pid: int) -> bool:
    """This process or one of its descendants (the console's own children)."""
    me = os.getpid()
    try:
        process = psutil.Process(pid)
        return pid == me or any(p.pid == me for p in process.parents())
    except psutil.Error:
        return False


def _program(pid: int | None) -> str:
    if pid is None:
        return "another program (its owner is hidden from this user)"
    try:
        return f"{psutil.Process(pid).name()} (pid {pid})"
    except psutil.Error:
        return f"pid {pid}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def diff(
    before: Sequence[Finding], after: Sequence[Finding]
) -> tuple[list[Finding], list[Finding]]:
    """(appeared, cleared): what a stream of findings should print, not the whole list again.

    Findings are compared by `Finding.key`, so a count that changes in the text is the
    same finding, not a new one each poll.
    """
    old, new = {f.key for f in before}, {f.key for f in after}
    return [f for f in after if f.key not in old], [f for f in before if f.key not in new]
