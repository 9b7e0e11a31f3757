"""django-tasks-db's claim and result save, each as one statement written once per loop.

django-tasks-db claims with ``SELECT … FOR UPDATE SKIP LOCKED`` then ``UPDATE``, each built
by the ORM, and saves the result with an ORM ``UPDATE``: per noop task, about 2.5 ms of worker
CPU (most of it building querysets) and, on PostgreSQL, five round trips (BEGIN, SELECT,
UPDATE, COMMIT, UPDATE). Here the claim is ``UPDATE … WHERE id = (SELECT id … ORDER BY …
LIMIT 1 [FOR UPDATE SKIP LOCKED]) RETURNING *`` and the save one conditional ``UPDATE``, their
SQL made once per loop, their parameters adapted by the model's own fields; bench/taskcost.py
measures the difference.

What stays django-tasks-db's exactly (tests/test_taskworker_claims.py checks each against its
own queryset): which task is claimed (its ``ready()`` filter, the backend and queue filters of
``db_worker`` and the model's ordering: priority descending, then ``run_after``, then
``enqueued_at``); one claim per task (on PostgreSQL the row lock with SKIP LOCKED, on SQLite
the write lock of an EXCLUSIVE transaction, as in ``exclusive_transaction``); what the claim
writes (``status`` RUNNING, ``started_at`` from this process's clock as ``timezone.now()``,
the worker id appended to ``worker_ids``, byte for byte as ``json.dumps`` writes the list, so
the ORM's exact lookups on it still match); and the columns a result save writes. What is not
kept: the ``pre_save``/``post_save`` signals of the claim's ``Model.save`` (the result save
sent none before either: it was already a queryset ``update``).

The claim still runs in a transaction, so the pool's latch can be asked with the row written
but not committed (`Statements.claim`'s ``admit``): refused, the transaction rolls back and
the row was never anything but READY to anyone else. On PostgreSQL the ``BEGIN`` and the
``UPDATE`` go in one query, so a claim costs two round trips (that one and the ``COMMIT``),
not four. Server-side prepared statements are not used: Django turns them off
(``prepare_threshold=None``) so that PgBouncer in transaction mode keeps working, and so do we;
with the ORM gone from the path, parsing two short statements is not where the time goes.

Only SQLite and PostgreSQL (with psycopg 3) get these; `for_connection` returns None for other
databases and drivers, and the loop keeps django-tasks-db's own claim there.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import Field
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction

#: The columns django-tasks-db's set_successful / set_failed write.
RESULT_FIELDS = ["status", "return_value", "finished_at", "exception_class_path", "traceback"]
VENDORS = ("postgresql", "sqlite")


@dataclass
class Statements:
    """One loop's claim and save on one database alias."""

    alias: str
    claim_sql: str
    save_sql: str
    filters: list[str]  # the backend, then the queues included, then those excluded
    names: list[str]  # the attnames of the columns RETURNING gives, in order
    converters: dict[int, Any]  # the ORM's, for those columns (JSON, UUID, datetimes)
    compiler: Any

    def claim(self, worker_id: str, admit: Callable[[], bool]) -> DBTaskResult | None:
        """The next ready task, claimed for ``worker_id``, or None (none ready, or ``admit``
        said no: it is asked with the row written, before the commit)."""
        connection = connections[self.alias]
        now = timezone.now()
        params = [
            TaskResultStatus.RUNNING,
            _prep("started_at", now, connection),
            *_appended(worker_id, connection.vendor),
            TaskResultStatus.READY,
            _prep("run_after", get_date_max(), connection),
            _prep("run_after", now, connection),
            *self.filters,
        ]
        if connection.vendor == "postgresql":
            row = self._claim_postgresql(connection, params, admit)
        else:
            with exclusive_transaction(self.alias), connection.cursor() as cursor:
                cursor.execute(self.claim_sql, params)
                row = cursor.fetchone()
                if row is not None and not admit():
                    transaction.set_rollback(True, using=self.alias)
                    row = None
        if row is None:
            return None
        values = next(self.compiler.apply_converters([row], self.converters))
        return DBTaskResult.from_db(self.alias, self.names, values)

    def _claim_postgresql(
        self, connection: Any, params: list[Any], admit: Callable[[], bool]
    ) -> tuple[Any, ...] | None:
        """``BEGIN; UPDATE …`` in one round trip, then COMMIT (or ROLLBACK) in another.

        One simple-protocol query holding both statements, which only a client-side binding
        cursor sends (Django's default one is, but OPTIONS may choose server-side binding, so
        this makes its own). On the connection Django holds, with Django's loaders (jsonb
        comes back as text, as the JSONField converters expect), in autocommit as Django left
        it and leaves it: any error rolls back before it is raised, as Django's, so
        OperationalError means an outage here too. (psycopg's pipeline mode would send BEGIN
        with the UPDATE as well, but syncs after each: five round trips, not two.)"""
        import psycopg

        connection.close_if_health_check_failed()  # as Django's cursor() would, first
        connection.ensure_connection()
        raw = connection.connection
        with connection.wrap_database_errors:
            cursor = psycopg.ClientCursor(raw)
            try:
                # Through Django's wrapper, so that its execute_wrappers (instrumentation,
                # the benchmarks' statement counts) see the claim as they see the save.
                connection.make_cursor(cursor).execute("BEGIN; " + self.claim_sql, params)
                cursor.nextset()
                row: tuple[Any, ...] | None = cursor.fetchone()
                if row is not None and not admit():
                    row = None
                    cursor.execute("ROLLBACK")
                else:
                    cursor.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    raw.rollback()
                raise
            finally:
                cursor.close()
        return row

    def save(self, row: DBTaskResult) -> bool:
        """Write the outcome fields to ``row`` only if it is still RUNNING with the worker ids
        it was claimed with (compared as the ORM's exact lookup does); whether it was."""
        connection = connections[self.alias]
        params = [_prep(name, getattr(row, name), connection) for name in RESULT_FIELDS]
        params += [
            _prep("id", row.pk, connection),
            TaskResultStatus.RUNNING,
            _prep("worker_ids", row.worker_ids, connection),
        ]
        with connection.cursor() as cursor:
            cursor.execute(self.save_sql, params)
            return bool(cursor.rowcount)


def for_connection(
    alias: str, backend_name: str, queues: Sequence[str] | None, excluded: Sequence[str]
) -> Statements | None:
    """The statements for a loop claiming from ``alias`` (``queues`` None: all of them)."""
    connection = connections[alias]
    if connection.vendor not in VENDORS or (connection.vendor == "postgresql" and not _psycopg3()):
        return None
    meta = DBTaskResult._meta
    q = connection.ops.quote_name

    def column(name: str) -> str:
        return q(str(_field(name).column))

    table, pk, ids = q(str(meta.db_table)), column("id"), column("worker_ids")
    run_after, queue = column("run_after"), column("queue_name")
    where = [f"{column('status')} = %s", f"({run_after} = %s OR {run_after} <= %s)"]
    where.append(f"{column('backend_name')} = %s")
    filters = [backend_name]
    if queues is not None:
        where.append(f"{queue} IN ({', '.join(['%s'] * len(queues))})")
        filters += queues
    if excluded:
        where.append(f"NOT ({queue} IN ({', '.join(['%s'] * len(excluded))}))")
        filters += excluded
    ordering: list[Any] = list(meta.ordering or [])  # F(...).desc() / .asc(): OrderBy
    order = ", ".join(
        f"{column(o.expression.name)} {'DESC' if o.descending else 'ASC'}" for o in ordering
    )
    if connection.vendor == "postgresql":
        lock = " FOR UPDATE SKIP LOCKED"
        appended = f"{ids} || jsonb_build_array(%s::text)"
    else:  # the text json.dumps makes of the list with the id appended (see `_appended`)
        lock = ""
        appended = (
            f"CASE WHEN {ids} = '[]' THEN '[' || %s || ']' "
            f"ELSE substr({ids}, 1, length({ids}) - 1) || ', ' || %s || ']' END"
        )
    fields = meta.concrete_fields
    claim_sql = (
        f"UPDATE {table} SET {column('status')} = %s, {column('started_at')} = %s, "
        f"{ids} = {appended} WHERE {pk} = (SELECT {pk} FROM {table} "
        f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT 1{lock}) "
        f"RETURNING {', '.join(q(str(field.column)) for field in fields)}"
    )
    assignments = ", ".join(f"{column(name)} = %s" for name in RESULT_FIELDS)
    save_sql = (
        f"UPDATE {table} SET {assignments} "
        f"WHERE {pk} = %s AND {column('status')} = %s AND {ids} = %s"
    )
    compiler = DBTaskResult.objects.using(alias).all().query.get_compiler(alias)
    return Statements(
        alias=alias,
        claim_sql=claim_sql,
        save_sql=save_sql,
        filters=filters,
        names=[field.attname for field in fields],
        converters=compiler.get_converters([f.get_col(str(meta.db_table)) for f in fields]),
        compiler=compiler,
    )


def _psycopg3() -> bool:
    """Whether Django drives PostgreSQL with psycopg 3 (the claim uses its ClientCursor);
    with psycopg2 the loop keeps django-tasks-db's claim."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return bool(is_psycopg3)


def _field(name: str) -> Field[Any, Any]:
    field = DBTaskResult._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _prep(name: str, value: Any, connection: Any) -> Any:
    """``value`` as the ORM sends it for the field ``name``."""
    return _field(name).get_db_prep_save(value, connection)


def _appended(worker_id: str, vendor: str) -> list[str]:
    """The claim's parameters for appending ``worker_id`` to ``worker_ids``. On SQLite the
    column is text, compared as text by the ORM's exact lookup, so the claim writes what
    ``json.dumps`` writes for the longer list: the id quoted by it, after ``, `` unless the
    list was empty."""
    if vendor == "postgresql":
        return [worker_id]
    quoted = json.dumps(worker_id)
    return [quoted, quoted]
