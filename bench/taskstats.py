"""How long one ``backends.taskstats.poll()`` takes on a result table of a million rows.

Why this exists
---------------
The console polls task statistics every second or two, and django-tasks-db keeps every result
row: a busy project reaches a million rows in days. django-tasks-db indexes READY rows only, so
this measures a poll with and without the two optional indexes of the ``prodserver_tui`` app
(``backends.taskworker``), on SQLite and on PostgreSQL.

What it does
------------
* SQLite: a file in a temporary folder. PostgreSQL: a scratch database
  ``prodserver_stats_bench_<pid>`` on 127.0.0.1:5432 (trust auth, user postgres or root), when a
  server answers and psycopg is installed; otherwise its row says why it was skipped. Both are
  removed at the end, however the script ends.
* A throwaway settings module (in the temporary folder) installs django-tasks-db (plus the
  django-tasks backport on Django 5.2) and the index app; ``migrate django_tasks_database``
  makes the table without the indexes.
* Rows (1,000,000 by default): history finished over the last 7 days, then a tail finished over
  the last 10 minutes (2 % of the rows, about 33 tasks/s), a few thousand READY (a sixth of them
  deferred into the future, the rest due), 8 RUNNING; 3 % of finished tasks FAILED with a
  traceback; queues default (80 %) and emails; worker ids mostly ``host:pid:thread`` (this
  host and another one), some db_worker-style random ids. SQLite is filled with executemany,
  PostgreSQL with COPY, then VACUUM ANALYZE (what autovacuum does soon after a bulk load); SQLite
  gets no ANALYZE, as in most deployments.
* Before each timing the tail is moved up to now (an UPDATE of its 20,000 rows), so every poll
  sees a full last minute of work, as on a live system. The first poll (which counts all
  history once, see taskstats) is timed on its own; then the median and p95 of ``--calls``
  (20) polls, back to back (the console polls every 1-2 s). Then ``migrate prodserver_tui``
  adds the two indexes, the settled totals are forgotten, and the same is timed again.

Run from the repository root::

    .venv/bin/python bench/taskstats.py
    .venv/bin/python bench/taskstats.py --rows 200000 --databases sqlite --explain
    .venv/bin/python bench/taskstats.py --json /tmp/taskstats.json     # for bench/report.py
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.harness import Column, Report, Table, log, percentile  # noqa: E402

TABLE = "django_tasks_database_dbtaskresult"
COLUMNS = (
    "id",
    "status",
    "enqueued_at",
    "started_at",
    "finished_at",
    "args_kwargs",
    "priority",
    "task_path",
    "worker_ids",
    "queue_name",
    "backend_name",
    "run_after",
    "return_value",
    "exception_class_path",
    "traceback",
)
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/.venv/lib/python3.12/site-packages/django_tasks_db/management/commands/'
    'db_worker.py", line 180, in run_task\n'
    "    return_value = task.call(*task_result.args, **task_result.kwargs)\n"
    '  File "/srv/app/shop/tasks.py", line 42, in send_receipt\n'
    "    raise ValueError(f'no address for order {order_id}')\n"
    "ValueError: no address for order {n}\n"
)


def settings_source(sqlite_path: Path, pg: dict[str, Any] | None) -> str:
    apps = ["django_tasks_db"]
    if importlib.util.find_spec("django.tasks") is None:
        apps.insert(0, "django_tasks")
    if importlib.util.find_spec("backends.taskworker.apps") is not None:
        apps.append("backends.taskworker")
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(sqlite_path),
            "OPTIONS": {"timeout": 20},
        }
    }
    if pg is not None:
        databases["pg"] = {"ENGINE": "django.db.backends.postgresql", **pg}
    return (
        "SECRET_KEY = 'bench-only'\n"
        f"INSTALLED_APPS = {apps!r}\n"
        f"DATABASES = {databases!r}\n"
        "TASKS = {'default': {'BACKEND': 'django_tasks_db.DatabaseBackend',"
        " 'QUEUES': ['default', 'emails']}}\n"
        "USE_TZ = True\nTIME_ZONE = 'UTC'\n"
        "DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'\n"
    )


def find_postgres() -> tuple[dict[str, Any] | None, str]:
    """Connection parameters of a server that answers, or None and why not."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg not installed (pip install 'psycopg[binary]')"
    reasons = []
    for user in ("postgres", "root"):
        params = {"HOST": "127.0.0.1", "PORT": "5432", "USER": user, "PASSWORD": ""}
        try:
            with psycopg.connect(
                host="127.0.0.1", port=5432, user=user, dbname="postgres", connect_timeout=3
            ):
                return params, ""
        except psycopg.Error as exc:
            reasons.append(" ".join(str(exc).split())[:80])
    return None, f"no PostgreSQL on 127.0.0.1:5432 ({reasons[-1]})"


def admin_sql(pg: dict[str, Any], sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host=pg["HOST"], port=int(pg["PORT"]), user=pg["USER"], dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql)


TAIL = timedelta(minutes=10)


def rows(count: int, seed: int, host: str, stamp: list[datetime]) -> Iterator[tuple[Any, ...]]:
    """Rows as Python values, oldest history first and the live part (tail, READY) last.

    The time the tail was stamped with is appended to ``stamp``, for `refresh_tail`.
    """
    rng = random.Random(seed)
    now = datetime.now(UTC)
    live = max(100, count // 50)
    ready = max(10, min(3000, count // 300))
    running = 8
    history = count - live - ready - running
    pids = [rng.randint(1000, 400000) for _ in range(6)]
    random_ids = [uuid.UUID(int=rng.getrandbits(128)).hex[:20] for _ in range(4)]

    def worker() -> str:
        pick = rng.random()
        if pick < 0.5:
            return f"{host}:{rng.choice(pids)}:{rng.randint(0, 3)}"
        if pick < 0.8:
            return f"otherhost:{rng.choice(pids)}:{rng.randint(0, 3)}"
        return rng.choice(random_ids)  # db_worker's own kind: random, one per process

    def finished(at: datetime) -> tuple[Any, ...]:
        run = timedelta(seconds=rng.expovariate(1 / 0.2))
        wait = timedelta(seconds=rng.expovariate(1 / 1.0))
        started = at - run
        failed = rng.random() < 0.03
        queue = "default" if rng.random() < 0.8 else "emails"
        return (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            "FAILED" if failed else "SUCCESSFUL",
            started - wait,
            started,
            at,
            '{"args": [42], "kwargs": {}}',
            0,
            "shop.tasks.send_receipt" if queue == "emails" else "shop.tasks.refresh",
            json.dumps([worker()]),
            queue,
            "default",
            NEVER,
            None if failed else "true",
            "builtins.ValueError" if failed else "",
            TRACEBACK.replace("{n}", str(rng.randint(1, 10**6))) if failed else "",
        )

    week = 7 * 86400.0
    for _ in range(history):
        yield finished(now - timedelta(seconds=600 + rng.random() * (week - 600)))
    now = datetime.now(UTC)  # the tail is stamped after the history, so it is really recent
    stamp.append(now)
    for _ in range(live):
        yield finished(now - TAIL * rng.random())
    for i in range(ready + running):
        enqueued = now - timedelta(seconds=rng.random() * 30)
        deferred = i % 6 == 0
        run_after = now + timedelta(hours=1 + rng.random()) if deferred else NEVER
        is_running = i >= ready
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            "RUNNING" if is_running else "READY",
            enqueued,
            now if is_running else None,
            None,
            '{"args": [42], "kwargs": {}}',
            0,
            "shop.tasks.refresh",
            json.dumps([worker()] if is_running else []),
            "default" if rng.random() < 0.8 else "emails",
            "default",
            run_after,
            None,
            "",
            "",
        )


def load(alias: str, count: int, host: str) -> tuple[float, datetime]:
    """Seconds the load took, and when the recent tail was stamped."""
    from django.db import connections, transaction

    connection = connections[alias]
    started = time.perf_counter()
    stamp: list[datetime] = []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows(count, 1, host, stamp):
                    copy.write_row(row)
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {TABLE}")
        return time.perf_counter() - started, stamp[0]

    def sqlite_value(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
        if isinstance(value, uuid.UUID):
            return value.hex
        return value

    sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"
    batch: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous = OFF")
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for row in rows(count, 1, host, stamp):
            batch.append(tuple(sqlite_value(v) for v in row))
            if len(batch) == 20000:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
    return time.perf_counter() - started, stamp[0]


def refresh_tail(alias: str, stamped: datetime) -> datetime:
    """Move the recent tail up to now, so every timing sees a full last minute of work."""
    from django.db.models import F
    from django_tasks_db.models import DBTaskResult

    now = datetime.now(UTC)
    shift = now - stamped
    tail = DBTaskResult.objects.using(alias).filter(
        status__in=("SUCCESSFUL", "FAILED"), finished_at__gt=stamped - TAIL
    )
    tail.update(
        finished_at=F("finished_at") + shift,
        started_at=F("started_at") + shift,
        enqueued_at=F("enqueued_at") + shift,
    )
    return now


def time_polls(alias: str, calls: int, explain: bool) -> dict[str, Any]:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from backends import taskstats

    taskstats.reset(alias)
    with CaptureQueriesContext(connections[alias]) as captured:
        started = time.perf_counter()
        first = taskstats.poll(alias)
        first_ms = (time.perf_counter() - started) * 1000
    if explain:  # the all-history count runs in the first poll only
        show_plans(alias, [q for q in captured.captured_queries if "COUNT(*)" in q["sql"]])
    if first.error:
        raise SystemExit(f"poll failed on {alias}: {first.error}")
    timings = []
    with CaptureQueriesContext(connections[alias]) as captured:
        for _ in range(calls):
            started = time.perf_counter()
            snap = taskstats.poll(alias)
            timings.append((time.perf_counter() - started) * 1000)
    per_poll = len(captured.captured_queries) // calls
    if explain:
        show_plans(alias, captured.captured_queries[:per_poll])
    default = next(q for q in snap.queues if q.queue == "default")
    return {
        "first": first_ms,
        "median": statistics.median(timings),
        "p95": percentile(timings, 95),
        "queries": per_poll,
        "check": f"ready={default.ready} sched={default.scheduled} run={default.running} "
        f"ok1m={default.succeeded_1m} fail1m={default.failed_1m} "
        f"total={default.succeeded_total + default.failed_total} "
        f"wait50={default.wait_p50 or 0:.2f}s run95={default.run_p95 or 0:.2f}s",
    }


def show_plans(alias: str, queries: list[dict[str, str]]) -> None:
    from django.db import connections

    connection = connections[alias]
    prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        for query in queries:
            print(f"\n--- {alias}: {query['sql'][:300]}")
            cursor.execute(prefix + query["sql"])
            for row in cursor.fetchall():
                print("   ", " | ".join(str(c) for c in row))


def bench(table: Table, alias: str, label: str, count: int, calls: int, explain: bool) -> None:
    from django.core.management import call_command

    from backends import taskstats
    from backends.taskworker import ids

    if alias != "default":
        # django-tasks-db's data migration 0016 forgets .using(alias) and updates the default
        # database whatever alias is being migrated: without the table there, it fails.
        call_command("migrate", "django_tasks_database", database="default", verbosity=0)
    call_command("migrate", "django_tasks_database", database=alias, verbosity=0)
    seconds, stamped = load(alias, count, ids.this_host())
    log(f"{label}: loaded {count:,} rows in {seconds:.1f} s")
    for index in ("no", "yes"):
        if index == "yes":
            started = time.perf_counter()
            call_command("migrate", "prodserver_tui", database=alias, verbosity=0)
            log(f"{label}: index built in {time.perf_counter() - started:.1f} s")
        assert taskstats.has_index(alias) == (index == "yes")
        stamped = refresh_tail(alias, stamped)
        result = time_polls(alias, calls, explain)
        log(f"{label} index={index}: {result['check']}")
        table.add(
            database=label,
            rows=count,
            index=index,
            first=result["first"],
            median=result["median"],
            p95=result["p95"],
            queries=result["queries"],
        )


SHOWN = [
    Column("database", "database"),
    Column("rows", "rows", "{:,}", right=True),
    Column("index", "backends.taskworker indexes"),
    Column("first", "first poll ms", "{:,.1f}", right=True),
    Column("median", "poll median ms", "{:,.1f}", right=True),
    Column("p95", "poll p95 ms", "{:,.1f}", right=True),
    Column("queries", "queries", right=True),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--explain", action="store_true", help="print each query's plan")
    parser.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = parser.parse_args()
    wanted = set(args.databases.split(","))
    report = Report("taskstats")
    table = report.table(f"One statistics poll on {args.rows:,} task results", SHOWN)

    tmp = Path(tempfile.mkdtemp(prefix="prodserver-stats-bench-"))
    pg, why_not = find_postgres() if "postgresql" in wanted else (None, "not requested")
    pg_name = f"prodserver_stats_bench_{os.getpid()}"
    try:
        if pg is not None:
            admin_sql(pg, f"CREATE DATABASE {pg_name}")
            pg = {**pg, "NAME": pg_name}
        (tmp / "bench_settings.py").write_text(settings_source(tmp / "bench.sqlite3", pg))
        sys.path[:0] = [str(tmp), str(ROOT)]
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench_settings"
        import django

        django.setup()
        if "sqlite" in wanted:
            bench(table, "default", "sqlite", args.rows, args.calls, args.explain)
        if pg is not None:
            bench(table, "pg", "postgresql", args.rows, args.calls, args.explain)
        elif "postgresql" in wanted:
            table.add(database="postgresql", index=f"skipped: {why_not}")
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if pg is not None:
            admin_sql(pg, f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        shutil.rmtree(tmp, ignore_errors=True)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
