"""Queue depth, throughput, latency and recent failures, read from django-tasks-db's result table.

The console polls this from a thread every second or two while the table keeps every task ever
run (a million rows is ordinary), so a poll must read only what changed recently, never the
whole history:

* READY rows come through django-tasks-db's own partial index (READY rows only).
* Everything about running or finished tasks is a range on ``(status, finished_at)``, an index
  that the optional ``prodserver_tui`` app adds (``"backends.taskworker"`` in INSTALLED_APPS,
  then ``manage.py migrate``). django-tasks-db indexes neither column, so without that app each
  of those queries scans the table: the numbers are the same, only slower (and on SQLite every
  scan holds a read lock that makes the workers' commits wait).
* All-time totals would need a count of the whole table on every poll, so they are counted
  once, up to a settled watermark a minute back, and then advanced by the rows finishing after
  it. A full recount every ten minutes picks up what advancing cannot see (rows deleted by a
  cleanup, or stamped by a worker whose clock lags by minutes); `reset` forces one sooner. The
  app's second index, ``(backend_name, queue_name, status, finished_at)``, lets that count read
  the index alone.

Separate queries are separate snapshots: a task that moves on between two of them may be
missed or seen twice for one poll. That is the price of not holding a read transaction open
(which on SQLite would block every worker's commit for the whole poll).

Connections: `poll` uses Django's connection for the calling thread and leaves it open, like
any ORM call. A thread that polls should call ``django.db.connections.close_all()`` when it is
done with a round (or stops), or it keeps one database connection open per thread. Only after
a database error does `poll` close a connection, and only one Django itself marks unusable.

This module must never import the console (tui) or any UI library.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, connections
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    FloatField,
    Func,
    Min,
    Q,
    Value,
    When,
)
from django.db.models.functions import Right
from django.utils import timezone
from django.utils.connection import ConnectionDoesNotExist

from backends import dbslots
from backends.base import flat
from backends.snapshot import Failure, QueueStats, Snapshot, WorkerCounts
from backends.taskworker import ids

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler

TABLE = "django_tasks_database_dbtaskresult"
#: Created by backends/taskworker/migrations; optional, see the module docstring.
FINISHED_INDEX = "prodserver_tui_finished_idx"  # (status, finished_at)
TOTALS_INDEX = "prodserver_tui_totals_idx"  # (backend_name, queue_name, status, finished_at)

READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"
FINISHED = (SUCCESSFUL, FAILED)
DB_BACKENDS = frozenset(
    {"django_tasks_db.DatabaseBackend", "django_tasks_db.backend.DatabaseBackend"}
)
DEFAULT_QUEUE = "default"

WINDOW = timedelta(seconds=60)
SHORT_WINDOW = timedelta(seconds=10)
#: Latency percentiles come from the last SAMPLE finished tasks, at most PER_QUEUE per queue:
#: a bounded read that still reflects "now", and a quiet queue is not drowned by a busy one.
SAMPLE = 1000
PER_QUEUE = 200
#: Rows finished longer ago than this are assumed final (committed, not still being written).
SETTLE = timedelta(seconds=60)
#: How often the settled totals are recounted from scratch (a full scan of the table).
RECOUNT_EVERY = 600.0
#: How long a look for the optional indexes is trusted (a migrate may add them meanwhile).
INDEX_CHECK_EVERY = 60.0
#: Enough of a traceback to find its last line, without fetching megabytes of it.
TRACEBACK_TAIL = 2000
#: Seconds a poll waits for SQLite's lock before saying "locked": the project's
#: OPTIONS["timeout"] (often 20 s) is meant for writers; a display that reports a writer
#: holding the file beats one that freezes, silently, for as long as the lock is held.
SQLITE_LOCK_WAIT = 1.0


def poll(using: str = "default", failures: int = 10) -> Snapshot:
    """One round of statistics; database trouble comes back as ``error``, never as an exception.

    The console keeps showing its last good values while ``error`` says what is wrong, so a
    locked SQLite file or a restarting server must not kill the polling thread.
    """
    now = timezone.now()
    try:
        with _short_lock_wait(using):
            return _poll(using, failures, now)
    except (DatabaseError, InterfaceError) as exc:  # InterfaceError: a connection known closed
        _drop_if_broken(using)
        return _empty(now, explain(exc, using))
    except (ConnectionDoesNotExist, ImproperlyConfigured, RuntimeError, LookupError) as exc:
        # Not the database itself but the setup around it: no such alias, app not installed.
        if "INSTALLED_APPS" in str(exc):
            return _empty(now, "django_tasks_db is not in INSTALLED_APPS: add it, then migrate")
        return _empty(now, flat(f"cannot read task results: {exc}"))


def reset(using: str | None = None) -> None:
    """Forget settled totals and index lookups: the next poll recounts (e.g. after a prune)."""
    with _lock:
        for cache in (_settled, _index_seen):
            for key in [k for k in cache if using is None or k[0] == using]:
                del cache[key]


def configured_queues() -> list[tuple[str, str]]:
    """(backend alias, queue) pairs of settings.TASKS that use django-tasks-db.

    A configured queue with no rows yet still gets a line of zeros, which tells the user that
    the queue exists and is idle rather than misspelled.
    """
    pairs: list[tuple[str, str]] = []
    for alias, params in (getattr(settings, "TASKS", None) or {}).items():
        backend = params.get("BACKEND") if isinstance(params, dict) else None
        if not isinstance(backend, str) or not is_db_backend(backend):
            continue
        for queue in params.get("QUEUES") or [DEFAULT_QUEUE]:
            if (alias, queue) not in pairs:
                pairs.append((alias, queue))
    return pairs


def has_index(using: str = "default") -> bool:
    """Whether the optional indexes exist: a console can suggest the app when they do not."""
    connection = connections[using]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return FINISHED_INDEX in constraints and TOTALS_INDEX in constraints


def explain(exc: BaseException, using: str = "default") -> str:
    """One line for the status bar: what is wrong with the database, then how to fix it."""
    what, fix = diagnose_error(exc, using)
    return f"{what}: {fix}" if fix else what


def diagnose_error(exc: BaseException, using: str = "default") -> tuple[str, str]:
    """A database error as (what is wrong, how to fix it); the fix may be empty."""
    text = flat(str(exc)) or type(exc).__name__
    low = text.lower()
    if (
        "no such table" in low
        or "doesn't exist" in low
        or ("does not exist" in low and "relation" in low)
    ):
        return f"table {TABLE} is missing", "run manage.py migrate"
    if "no such column" in low or ("does not exist" in low and "column" in low):
        return f"table {TABLE} is out of date ({text})", "run manage.py migrate"
    if "database is locked" in low or "database table is locked" in low:
        return (
            "database is locked by a writer (SQLite)",
            "retrying on the next poll; WAL mode or a longer OPTIONS['timeout'] makes this rarer",
        )
    if dbslots.refused(text):  # before "connection failed": the server is up, and full
        return (
            f"database '{using}' has no connection slot left ({text})",
            "give task workers fewer threads or put PgBouncer in front of PostgreSQL "
            "(prodserver-tui --check shows the arithmetic)",
        )
    if "unable to open database file" in low:
        return "cannot open the SQLite database file", f"check DATABASES['{using}']['NAME']"
    unreachable = (
        "could not connect",
        "connection refused",
        "connection failed",
        "could not translate host",
        "server closed the connection",
        "terminating connection",
        "connection is closed",
        "connection already closed",
        "timeout expired",
    )
    if any(marker in low for marker in unreachable):
        return (
            f"database '{using}' is unreachable ({text})",
            f"check DATABASES['{using}'] and that the server is running",
        )
    return f"database error on '{using}': {text}", ""


# --- internals -----------------------------------------------------------------------------


@dataclass
class _Queue:
    """Mutable tallies for one (backend, queue) while a poll is being assembled."""

    ready: int = 0
    scheduled: int = 0
    running: int = 0
    succeeded_1m: int = 0
    failed_1m: int = 0
    succeeded_total: int = 0
    failed_total: int = 0
    finished_10s: int = 0
    finished_60s: int = 0
    waits: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Settled:
    """Counts of finished rows up to ``upto``, so later polls need only count newer rows."""

    upto: datetime
    counts: dict[tuple[str, str, str], int]
    counted_at: float  # time.monotonic() of the last full count


_lock = threading.Lock()
_settled: dict[tuple[str, ...], _Settled] = {}
_index_seen: dict[tuple[str, ...], tuple[bool, float]] = {}


def _indexed(using: str) -> bool:
    """`has_index`, looked up once a minute: introspection costs more than a poll's queries."""
    key = _db_key(using)
    with _lock:
        seen = _index_seen.get(key)
    if seen is not None and time.monotonic() - seen[1] < INDEX_CHECK_EVERY:
        return seen[0]
    present = has_index(using)
    with _lock:
        _index_seen[key] = (present, time.monotonic())
    return present


def _poll(using: str, failures: int, now: datetime) -> Snapshot:
    from django_tasks_db.models import DBTaskResult, get_date_max

    rows = DBTaskResult.objects.using(using).order_by()
    never = get_date_max()  # run_after of a task that was not deferred
    queues: dict[tuple[str, str], _Queue] = defaultdict(_Queue)
    for pair in configured_queues():
        queues[pair] = _Queue()
    pids: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # running, succeeded, failed

    # READY: through django-tasks-db's partial index. A deferred task waits from run_after on.
    due = Q(run_after=never) | Q(run_after__lte=now)
    due_since = Case(
        When(Q(run_after=never) | Q(run_after__lt=F("enqueued_at")), then=F("enqueued_at")),
        default=F("run_after"),
        output_field=DateTimeField(),
    )
    oldest: datetime | None = None
    ready = (
        rows.filter(status=READY)
        .values_list("backend_name", "queue_name")
        .annotate(
            n_due=Count("pk", filter=due),
            n_later=Count("pk", filter=~due),
            since=Min(due_since, filter=due),
        )
    )
    for backend, queue, n_due, n_later, since in ready:
        tally = queues[backend, queue]
        tally.ready += n_due
        tally.scheduled += n_later
        if since is not None and (oldest is None or since < oldest):
            oldest = since

    _count_active(rows, using, now, queues, pids)
    _sample_latency(rows, queues, due_since, now, _indexed(using))
    recent_failures = _failures(rows, failures) if failures > 0 else []

    return Snapshot(
        taken_at=now,
        queues=[_queue_stats(pair, queues[pair]) for pair in sorted(queues)],
        failures=recent_failures,
        by_pid={pid: WorkerCounts(*counts) for pid, counts in sorted(pids.items())},
        oldest_ready_wait=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
    )


def _count_active(
    rows: Any,
    using: str,
    now: datetime,
    queues: dict[tuple[str, str], _Queue],
    pids: dict[int, list[int]],
) -> None:
    """RUNNING rows, the recent windows, per-pid counts and the totals, in one query.

    It reads RUNNING rows and rows finished since the settled watermark (about a minute's
    worth), grouped by worker_ids: there are as many distinct lists as worker threads, so the
    pid attribution costs a handful of groups, not a row per task.
    """
    key = _db_key(using)
    with _lock:
        settled = _settled.get(key)
    if settled is None or time.monotonic() - settled.counted_at > RECOUNT_EVERY:
        settled = _full_count(rows, now - SETTLE)
    # Never move the watermark back (a clock step backwards would count rows twice).
    settle_to = max(settled.upto, now - SETTLE)
    since = min(settled.upto, now - WINDOW)
    active = (
        rows.filter(Q(status=RUNNING) | Q(status__in=FINISHED, finished_at__gt=since))
        .values_list("backend_name", "queue_name", "status", "worker_ids")
        .annotate(
            n=Count("pk"),
            settling=Count(
                "pk", filter=Q(finished_at__gt=settled.upto, finished_at__lte=settle_to)
            ),
            unsettled=Count("pk", filter=Q(finished_at__gt=settle_to)),
            last_60s=Count("pk", filter=Q(finished_at__gt=now - WINDOW)),
            last_10s=Count("pk", filter=Q(finished_at__gt=now - SHORT_WINDOW)),
        )
    )
    totals = dict(settled.counts)
    advanced = dict(settled.counts)
    for backend, queue, status, worker_ids, n, settling, unsettled, last_60s, last_10s in active:
        tally = queues[backend, queue]
        pid = _local_pid(worker_ids)
        if status == RUNNING:
            tally.running += n
            if pid is not None:
                pids[pid][0] += n
            continue
        key3 = (backend, queue, status)
        totals[key3] = totals.get(key3, 0) + settling + unsettled
        advanced[key3] = advanced.get(key3, 0) + settling
        tally.finished_60s += last_60s
        tally.finished_10s += last_10s
        failed = status == FAILED
        if failed:
            tally.failed_1m += last_60s
        else:
            tally.succeeded_1m += last_60s
        if pid is not None and last_60s:
            pids[pid][2 if failed else 1] += last_60s
    for (backend, queue, status), count in totals.items():
        tally = queues[backend, queue]
        if status == FAILED:
            tally.failed_total += count
        else:
            tally.succeeded_total += count
    with _lock:
        # Another thread polling the same database may have advanced it meanwhile: keep theirs.
        current = _settled.get(key)
        if current is None or current is settled or current.counted_at < settled.counted_at:
            _settled[key] = _Settled(settle_to, advanced, settled.counted_at)


def _full_count(rows: Any, upto: datetime) -> _Settled:
    """The one query that reads all history; run on the first poll and every RECOUNT_EVERY.

    No condition on status on purpose: with one, SQLite's planner (no statistics) picks the
    (status, finished_at) index and visits a million table rows; without, it reads only the
    covering (backend_name, queue_name, status, finished_at) index, in GROUP BY order. The
    few READY and RUNNING groups it also counts are dropped here.
    """
    counted = (
        rows.exclude(finished_at__gt=upto)
        .values_list("backend_name", "queue_name", "status")
        .annotate(n=Count("*"))
    )
    counts = {(b, q, status): n for b, q, status, n in counted if status in FINISHED}
    return _Settled(upto, counts, time.monotonic())


def _sample_latency(
    rows: Any,
    queues: dict[tuple[str, str], _Queue],
    due_since: Case,
    now: datetime,
    indexed: bool,
) -> None:
    """Waits and run times of the latest SAMPLE finished tasks, at most PER_QUEUE per queue.

    With the index, one read per status, because ``status IN (...) ORDER BY finished_at``
    cannot be read in order from a (status, finished_at) index; the failed read is bounded by
    the oldest row the successful one returned, so rare failures do not pull in days of
    history. Without the index every read is a scan, so one read does both. Every column is a
    number of seconds computed by the database: turning a thousand timestamps into datetimes
    cost more than the queries.
    """
    columns = {
        "age": _Seconds(Value(now, output_field=DateTimeField()), "finished_at"),
        "wait": _Seconds("started_at", due_since),
        "run": _Seconds("finished_at", "started_at"),
    }

    def latest(statuses: tuple[str, ...], after: datetime | None) -> list[tuple[Any, ...]]:
        picked = rows.filter(status__in=statuses, finished_at__isnull=False)
        if after is not None:
            picked = picked.filter(finished_at__gte=after)
        ordered = picked.annotate(**columns).order_by("-finished_at")
        return list(
            ordered.values_list("backend_name", "queue_name", "age", "wait", "run")[:SAMPLE]
        )

    if indexed:
        succeeded = latest((SUCCESSFUL,), None)
        cutoff = None
        if len(succeeded) == SAMPLE:  # a millisecond of slack for julianday's rounding
            cutoff = now - timedelta(seconds=succeeded[-1][2] + 0.001)
        sample = sorted([*succeeded, *latest((FAILED,), cutoff)], key=lambda r: r[2])
    else:
        sample = latest(FINISHED, None)
    for backend, queue, _age, wait, run in sample[:SAMPLE]:
        tally = queues[backend, queue]
        if len(tally.runs) >= PER_QUEUE or wait is None or run is None:
            continue
        tally.waits.append(max(0.0, float(wait)))
        tally.runs.append(max(0.0, float(run)))


class _Seconds(Func):
    """Seconds from ``start`` to ``end``, computed by the database.

    Django's portable datetime subtraction calls a Python function per row on SQLite, which
    made the latency sample the dearest part of a poll; julianday() is native.
    """

    output_field = FloatField()

    def __init__(self, end: Any, start: Any) -> None:
        super().__init__(end, start)

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        end, start = self.get_source_expressions()
        end_sql, end_params = compiler.compile(end)
        start_sql, start_params = compiler.compile(start)
        if connection.vendor == "sqlite":
            sql = f"((julianday({end_sql}) - julianday({start_sql})) * 86400.0)"
        elif connection.vendor == "mysql":
            sql = f"(TIMESTAMPDIFF(MICROSECOND, {start_sql}, {end_sql}) / 1000000.0)"
            return sql, (*start_params, *end_params)
        else:  # PostgreSQL; EXTRACT gives numeric (a Decimal) unless cast
            sql = f"CAST(EXTRACT(EPOCH FROM ({end_sql} - {start_sql})) AS double precision)"
        return sql, (*end_params, *start_params)


def _failures(rows: Any, limit: int) -> list[Failure]:
    latest = (
        rows.filter(status=FAILED, finished_at__isnull=False)
        .annotate(tail=Right("traceback", TRACEBACK_TAIL))
        .order_by("-finished_at")
        .values_list(
            "id",
            "task_path",
            "queue_name",
            "exception_class_path",
            "tail",
            "finished_at",
            "worker_ids",
        )[:limit]
    )
    return [
        Failure(
            id=str(id_),
            task_path=task_path,
            queue=queue,
            exception=exception,
            message=_last_line(tail) or exception.rpartition(".")[2],
            finished_at=finished_at,
            worker_id=_last_worker(worker_ids),
        )
        for id_, task_path, queue, exception, tail, finished_at, worker_ids in latest
    ]


def _queue_stats(pair: tuple[str, str], tally: _Queue) -> QueueStats:
    (wait_p50, wait_p95), (run_p50, run_p95) = p50_p95(tally.waits), p50_p95(tally.runs)
    return QueueStats(
        backend=pair[0],
        queue=pair[1],
        ready=tally.ready,
        scheduled=tally.scheduled,
        running=tally.running,
        succeeded_1m=tally.succeeded_1m,
        failed_1m=tally.failed_1m,
        succeeded_total=tally.succeeded_total,
        failed_total=tally.failed_total,
        throughput_10s=tally.finished_10s / SHORT_WINDOW.total_seconds(),
        throughput_60s=tally.finished_60s / WINDOW.total_seconds(),
        wait_p50=wait_p50,
        wait_p95=wait_p95,
        run_p50=run_p50,
        run_p95=run_p95,
    )


def p50_p95(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Median and 95th percentile, interpolated between closest ranks (the "inclusive"
    method, numpy's default): they never leave the range seen. ``None`` when empty; a single
    value is both (statistics.quantiles wants two before Python 3.13)."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (None, None)
    cuts = statistics.quantiles(values, n=20, method="inclusive")  # every 5 %
    return cuts[9], cuts[18]


def _last_worker(worker_ids: Any) -> str | None:
    if isinstance(worker_ids, list) and worker_ids and isinstance(worker_ids[-1], str):
        return worker_ids[-1]
    return None


def _local_pid(worker_ids: Any) -> int | None:
    """The pid in the task's last worker id, if one of our workers that sees our pids wrote it.

    A pid of another host (a shared PostgreSQL) or container would name an unrelated process.
    """
    last = _last_worker(worker_ids)
    parsed = ids.parse(last) if last else None
    if parsed is None or not ids.is_local(parsed):
        return None
    return parsed.pid


def _last_line(text: str | None) -> str:
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


@functools.lru_cache(maxsize=64)
def is_db_backend(path: str) -> bool:
    """Cached: a BACKEND that fails to import would otherwise be re-imported every poll."""
    if path in DB_BACKENDS:
        return True
    try:  # a project's own subclass of the database backend
        from django.utils.module_loading import import_string
        from django_tasks_db.backend import DatabaseBackend

        backend = import_string(path)
    except Exception:  # whatever a broken BACKEND raises, it is not ours to report here
        return False
    return isinstance(backend, type) and issubclass(backend, DatabaseBackend)


def _db_key(using: str) -> tuple[str, ...]:
    """The cache key of settled totals: the alias, and where it points in case that changes."""
    params = connections[using].settings_dict
    return (using, *(str(params.get(k, "")) for k in ("ENGINE", "NAME", "HOST", "PORT")))


@contextlib.contextmanager
def _short_lock_wait(using: str) -> Iterator[None]:
    """On SQLite, wait at most SQLITE_LOCK_WAIT for a lock during the poll, then restore."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    (before,) = raw.execute("PRAGMA busy_timeout").fetchone()
    raw.execute(f"PRAGMA busy_timeout = {int(SQLITE_LOCK_WAIT * 1000)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(before)}")


def _drop_if_broken(using: str) -> None:
    """A connection Django marked unusable would fail every later poll: let it reconnect."""
    # Closing a dead connection may fail too; the next poll reconnects either way.
    with contextlib.suppress(Exception):
        connections[using].close_if_unusable_or_obsolete()


def _empty(now: datetime, error: str) -> Snapshot:
    return Snapshot(
        taken_at=now, queues=[], failures=[], by_pid={}, oldest_ready_wait=None, error=error
    )
