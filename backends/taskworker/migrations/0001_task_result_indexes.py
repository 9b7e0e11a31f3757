"""(status, finished_at) on django-tasks-db's result table, for backends.taskstats.

One index serves every query a stats poll makes outside READY: RUNNING rows (status prefix),
finished in the last minute (a range per status), the latest failures and the latency sample
(read backwards per status). Raw SQL because the table belongs to another app: an AddIndex
here would have to claim that app's model. ``IF [NOT] EXISTS`` keeps it idempotent on SQLite
and PostgreSQL alike, so a hand-made index of the same name is not an error.
"""

from typing import ClassVar

from django.db import migrations

TABLE = "django_tasks_database_dbtaskresult"
INDEX = "prodserver_tui_finished_idx"


class Migration(migrations.Migration):
    dependencies: ClassVar = [
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations: ClassVar = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} (status, finished_at)",
            reverse_sql=f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
