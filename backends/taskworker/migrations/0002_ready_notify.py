"""A PostgreSQL trigger that tells listening workers a task is ready (`wakeup`).

In the database, not in the enqueueing code, so every producer rings it: a web server of this
project, a script on another host, a row requeued by hand. It fires on an insert of a READY
row and on a status set back to READY (a requeue); its payload is the JSON `wakeup.Ready`
parses. Nothing on other databases: SQLite has the doorbell instead.
"""

from typing import Any, ClassVar

from django.db import migrations

TABLE = "django_tasks_database_dbtaskresult"
# One statement each: a driver may send several only without parameters.
CREATE = [
    """
CREATE OR REPLACE FUNCTION prodserver_tui_ready() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('prodserver_tui_ready', json_build_object(
        'b', NEW.backend_name, 'q', NEW.queue_name, 'at', extract(epoch FROM NEW.run_after)
    )::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    f"DROP TRIGGER IF EXISTS prodserver_tui_ready ON {TABLE}",
    f"""CREATE TRIGGER prodserver_tui_ready AFTER INSERT OR UPDATE OF status ON {TABLE}
    FOR EACH ROW WHEN (NEW.status = 'READY') EXECUTE FUNCTION prodserver_tui_ready()""",
]
DROP = [
    f"DROP TRIGGER IF EXISTS prodserver_tui_ready ON {TABLE}",
    "DROP FUNCTION IF EXISTS prodserver_tui_ready()",
]


def _on_postgresql(statements: list[str]) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies: ClassVar = [("prodserver_tui", "0001_task_result_indexes")]

    operations: ClassVar = [
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False),
    ]
