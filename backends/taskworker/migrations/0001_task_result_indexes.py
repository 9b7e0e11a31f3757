"""Indexes on django-tasks-db's result table that make backends.taskstats cheap.

django-tasks-db indexes READY rows only, so without these every statistics poll scans the
table. ``(status, finished_at)`` serves each query a poll makes outside READY: RUNNING rows
(status prefix), rows finished in the last minute (a range per status), the latest failures
and the latency sample (read backwards per status). ``(backend_name, queue_name, status,
finished_at)`` covers the all-time totals per queue, counted from the index alone in GROUP BY
order; the poll does that once, then every ten minutes.

Raw SQL because the table belongs to another app (an AddIndex here would have to claim that
app's model); ``IF [NOT] EXISTS`` works on SQLite and PostgreSQL alike and keeps the migration
idempotent. On PostgreSQL, CREATE INDEX blocks writes to the table while it builds: about a
second per million rows.
"""

from typing import ClassVar

from django.db import migrations

TABLE = "django_tasks_database_dbtaskresult"
INDEXES = {
    "prodserver_tui_finished_idx": "status, finished_at",
    "prodserver_tui_totals_idx": "backend_name, queue_name, status, finished_at",
}


class Migration(migrations.Migration):
    dependencies: ClassVar = [
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations: ClassVar = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} ({columns})",
            reverse_sql=f"DROP INDEX IF EXISTS {name}",
        )
        for name, columns in INDEXES.items()
    ]
