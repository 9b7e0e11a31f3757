"""The task panel: queues, throughput, latency, recent failures, and stuck tasks to act on.

Queue numbers come from the supervisor's last statistics poll. Tracebacks and stuck tasks
are read from the database in a thread when the panel needs them, never on the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from tui import format as fmt
from tui.supervisor import Supervisor
from tui.widgets.dialogs import Dialog

if TYPE_CHECKING:  # importing it loads the Django ORM: only when the panel needs it
    from backends.taskworker.recovery import StuckTask


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


class TaskPanel(Dialog):
    DEFAULT_CSS = """
    TaskPanel > Vertical { width: 95%; height: 90%; }
    TaskPanel DataTable { height: auto; max-height: 12; margin-bottom: 1; }
    TaskPanel #traceback { height: 1fr; overflow-y: auto; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "dismiss(None)", "Close"),
        Binding("q", "app.quit", "Quit"),
        Binding("e", "requeue", "Requeue stuck"),
        Binding("f", "fail", "Mark stuck failed"),
    ]

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self.supervisor = supervisor
        self.stuck_ids: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Tasks", style="bold"), id="task-status")
            yield DataTable(id="queues", cursor_type="none", zebra_stripes=True)
            yield Label("Recent failures (select one to see its traceback)")
            yield DataTable(id="failures", cursor_type="row")
            yield Label(
                "Stuck tasks: RUNNING, but their worker process is gone (e requeue, f fail)"
            )
            yield DataTable(id="stuck", cursor_type="row")
            yield Static("", id="traceback", markup=False)

    def on_mount(self) -> None:
        self.query_one("#queues", DataTable).add_columns(
            "queue",
            "ready",
            "sched",
            "running",
            "ok/1m",
            "fail/1m",
            "10s",
            "60s",
            "wait p50",
            "p95",
            "run p50",
            "p95",
            "ok",
            "failed",
        )
        self.query_one("#failures", DataTable).add_columns("finished", "task", "error", "worker")
        self.query_one("#stuck", DataTable).add_columns("task", "queue", "worker", "why")
        self.refresh_stats()
        self.find_stuck()
        self.set_interval(2.0, self.refresh_stats)
        self.set_interval(5.0, self.find_stuck)

    def refresh_stats(self) -> None:
        stats = self.supervisor.stats
        status = self.query_one("#task-status", Label)
        if stats is None:
            status.update("Tasks: waiting for the first statistics…")
            return
        if stats.error:
            status.update(Text(f"Tasks: {stats.error}", style="red"))
        else:
            wait = stats.oldest_ready_wait
            status.update(
                Text(f"Tasks  (oldest ready task waiting {_seconds(wait)})", style="bold")
            )
        queues = self.query_one("#queues", DataTable)
        queues.clear()
        for q in stats.queues:
            # A str cell is markup to DataTable: names from the database go in as Text.
            queues.add_row(
                Text(f"{q.backend}/{q.queue}"),
                q.ready,
                q.scheduled,
                q.running,
                q.succeeded_1m,
                Text(str(q.failed_1m), style="red" if q.failed_1m else ""),
                fmt.rate(q.throughput_10s),
                fmt.rate(q.throughput_60s),
                _seconds(q.wait_p50),
                _seconds(q.wait_p95),
                _seconds(q.run_p50),
                _seconds(q.run_p95),
                q.succeeded_total,
                q.failed_total,
            )
        failures = self.query_one("#failures", DataTable)
        chosen = failures.cursor_row
        failures.clear()
        for f in stats.failures:
            failures.add_row(
                f.finished_at.strftime("%H:%M:%S"),
                Text(f.task_path),
                Text(f.message, style="red"),
                Text(f.worker_id or "-"),
                key=f.id,
            )
        if failures.row_count:
            failures.move_cursor(row=min(chosen, failures.row_count - 1))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "failures" and event.row_key.value:
            self.show_traceback(event.row_key.value)

    @work(thread=True, exclusive=True, group="traceback")
    def show_traceback(self, task_id: str) -> None:
        import django
        from django.db import connections

        try:
            django.setup()
            from django_tasks_db.models import DBTaskResult

            text = DBTaskResult.objects.filter(id=task_id).values_list("traceback", flat=True)
            traceback = next(iter(text), "") or "(no traceback recorded)"
        except Exception as e:
            traceback = f"cannot read the traceback: {e}"
        finally:
            connections.close_all()
        self.app.call_from_thread(self.query_one("#traceback", Static).update, traceback)

    @work(thread=True, exclusive=True, group="stuck")
    def find_stuck(self) -> None:
        import django
        from django.db import connections

        from backends.taskworker.recovery import find_stuck

        try:
            django.setup()
            stuck = find_stuck()
        except Exception as e:
            self.app.call_from_thread(
                self.notify, f"cannot look for stuck tasks: {e}", severity="error", markup=False
            )
            return
        finally:
            connections.close_all()
        self.app.call_from_thread(self._show_stuck, stuck)

    def _show_stuck(self, stuck: list[StuckTask]) -> None:
        table = self.query_one("#stuck", DataTable)
        table.clear()
        self.stuck_ids = [s.id for s in stuck]
        for s in stuck:
            table.add_row(*map(Text, (s.task_path, s.queue, s.worker_id, s.reason)), key=s.id)

    def _selected_stuck(self) -> str | None:
        table = self.query_one("#stuck", DataTable)
        if not self.stuck_ids or table.cursor_row >= len(self.stuck_ids):
            self.notify("no stuck task selected", severity="warning")
            return None
        return self.stuck_ids[table.cursor_row]

    def action_requeue(self) -> None:
        task_id = self._selected_stuck()
        if task_id:
            self.act_on_stuck(task_id, fail=False)

    def action_fail(self) -> None:
        task_id = self._selected_stuck()
        if task_id:
            self.act_on_stuck(task_id, fail=True)

    @work(thread=True, group="stuck-action")
    def act_on_stuck(self, task_id: str, fail: bool) -> None:
        from django.db import connections

        from backends.taskworker.recovery import mark_failed, requeue

        try:
            changed = (
                mark_failed([task_id], "marked failed from prodserver-tui")
                if fail
                else requeue([task_id])
            )
        finally:
            connections.close_all()
        verb = "marked failed" if fail else "requeued"
        self.app.call_from_thread(
            self.notify,
            f"task {task_id} {verb}" if changed else f"task {task_id} was not stuck any more",
        )
        self.find_stuck()
