"""The task panel: queues, throughput, latency, recent failures, and stuck tasks to act on.

Each task worker's wake-up mode comes first, then the queues, their enqueue→start latency
ahead of the rest (what a user waits for, visible at 80 columns). Queue numbers come from
the supervisor's last statistics poll. Tracebacks and stuck tasks are read, and stuck tasks
changed, by the statistics helper (a child process that holds the project's apps) when the
panel needs them; the panel only waits for its answer.
The panel opens on the failures, since that is what it is opened for: Down picks the next one,
and the chosen failure's message and traceback get the rest of the screen, scrollable, so
they stay readable at 80x24.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Label, Static

from backends.taskworker.ids import label
from backends.wakeup_line import POLLING
from tui import format as fmt
from tui.engine.api import ActionError, Engine
from tui.engine.output import inert, inert_all
from tui.engine.views import ProcessView
from tui.widgets.dialogs import Dialog

if TYPE_CHECKING:
    from backends.snapshot import Failure

NO_FAILURES = "No failed task recorded."


def _seconds(value: float | None) -> str:
    """Milliseconds below a second: a task woken at its enqueue waits 5 ms, which "0.01s" hid."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"


async def _from_database(engine: Engine, request: dict[str, Any], key: str) -> Any:
    """The helper's answer to ``request``, made inert: rows hold anyone's text (a task's
    exception, its queue name). Any failure is raised to the caller to show."""
    answer = await engine.ask(request)
    return inert_all(answer[key])


def failure_heading(failure: Failure) -> Text:
    """What failed, where and when, then its whole message: wrapped, never cut."""
    return Text.assemble(
        (failure.task_path, "bold"),
        f"  {failure.exception}  finished {failure.finished_at:%H:%M:%S}",
        f" on {label(failure.worker_id)}" if failure.worker_id else "",
        "\n",
        (failure.message, "red"),
    )


def wake_up_line(processes: Sequence[ProcessView]) -> Text:
    """``Wake-up: worker notify (2 processes)``: how each task worker's processes hear of new
    tasks (`backends.wakeup_line`); polling, the slow way, in yellow."""
    workers = [_wake_up(p) for p in processes if p.kind == "tasks"]
    return Text.assemble("Wake-up: ", Text(" · ").join(workers))


def _wake_up(p: ProcessView) -> Text:
    said = fmt.wake_up(p.wake_up)
    if p.pid is None:
        said, style = "not running", "dim"
    elif not said:
        said, style = "not reported yet", "dim"
    else:
        style = "yellow" if any(w.mode == POLLING for w in p.wake_up) else "green"
    return Text.assemble(p.name, " ", (said, style))


class TaskPanel(Dialog):
    DEFAULT_CSS = """
    TaskPanel > Vertical { width: 100%; height: 100%; }
    TaskPanel DataTable { height: auto; margin-bottom: 1; }
    TaskPanel #queues { max-height: 25%; }
    TaskPanel #failures { max-height: 30%; }
    TaskPanel #stuck { max-height: 20%; }
    TaskPanel #failure { height: auto; max-height: 5; }
    TaskPanel #traceback { height: 1fr; min-height: 3; }
    TaskPanel #traceback Static { color: $text-muted; }
    """
    AUTO_FOCUS = "#failures"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "dismiss(None)", "Close"),
        Binding("q", "app.quit", "Quit"),
        Binding("e", "requeue", "Requeue stuck"),
        Binding("f", "fail", "Mark stuck failed"),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.stuck_ids: list[str] = []
        self.failures: list[Failure] = []
        self.shown: str | None = None  # the failure whose traceback is shown

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Tasks", style="bold"), id="task-status")
            yield Label(id="wake-up")
            yield DataTable(id="queues", cursor_type="none", zebra_stripes=True)
            yield Label("Recent failures (↑ ↓ pick one, Tab scrolls its traceback)")
            yield DataTable(id="failures", cursor_type="row")
            yield Label("Stuck tasks: none", id="stuck-label")
            yield DataTable(id="stuck", cursor_type="row")
            yield Static(NO_FAILURES, id="failure", markup=False)
            with VerticalScroll(id="traceback"):
                yield Static(markup=False)

    def on_mount(self) -> None:
        self.query_one("#queues", DataTable).add_columns(
            "queue",
            "ready",
            "sched",
            "running",
            # What a user waits for (from run_after, for a deferred task): first, so that 80
            # columns show it.
            "enq→start p50",
            "p95",
            "ok/1m",
            "fail/1m",
            "10s",
            "60s",
            "run p50",
            "p95",
            "ok",
            "failed",
        )
        self.query_one("#failures", DataTable).add_columns("finished", "task", "error", "worker")
        stuck = self.query_one("#stuck", DataTable)
        stuck.add_columns("task", "queue", "worker", "why")
        stuck.display = False
        self.refresh_stats()
        self.find_stuck()
        self.set_interval(2.0, self.refresh_stats)
        self.set_interval(5.0, self.find_stuck)

    def refresh_stats(self) -> None:
        view = self.engine.view()
        self.query_one("#wake-up", Label).update(wake_up_line(view.processes))
        stats = view.stats
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
                _seconds(q.wait_p50),
                _seconds(q.wait_p95),
                q.succeeded_1m,
                Text(str(q.failed_1m), style="red" if q.failed_1m else ""),
                fmt.rate(q.throughput_10s),
                fmt.rate(q.throughput_60s),
                _seconds(q.run_p50),
                _seconds(q.run_p95),
                q.succeeded_total,
                q.failed_total,
            )
        if stats.failures != self.failures:
            self.show_failures(stats.failures)

    def show_failures(self, failures: list[Failure]) -> None:
        """Refill the table only when the list changed, keeping the chosen failure chosen
        (by id: new failures arrive on top and move every row down)."""
        self.failures = failures
        table = self.query_one("#failures", DataTable)
        table.clear()
        for f in failures:
            table.add_row(
                f.finished_at.strftime("%H:%M:%S"),
                Text(f.task_path),
                Text(f.message, style="red"),
                Text(label(f.worker_id) if f.worker_id else "-"),
                key=f.id,
            )
        ids = [f.id for f in failures]
        if self.shown in ids:
            table.move_cursor(row=ids.index(self.shown))
        elif not failures:  # the rows were deleted: nothing to show any more
            self.shown = None
            self.query_one("#failure", Static).update(NO_FAILURES)
            self.query_one("#traceback Static", Static).update("")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "failures" or event.row_key.value == self.shown:
            return
        chosen = next((f for f in self.failures if f.id == event.row_key.value), None)
        if chosen is not None:
            self.shown = chosen.id
            self.query_one("#failure", Static).update(failure_heading(chosen))
            self.query_one("#traceback Static", Static).update("reading the traceback…")
            self.show_traceback(chosen.id)

    @work(exclusive=True, group="traceback")
    async def show_traceback(self, task_id: str) -> None:
        request = {"op": "traceback", "id": task_id}
        try:
            traceback = str(await _from_database(self.engine, request, "text"))
        except (ActionError, KeyError) as e:
            traceback = inert(f"cannot read the traceback: {e}")
        self._show_traceback(task_id, traceback)

    def _show_traceback(self, task_id: str, traceback: str) -> None:
        """The innermost frames and the exception are at the end: show the end."""
        if task_id == self.shown:
            self.query_one("#traceback Static", Static).update(traceback.rstrip())
            self.query_one("#traceback", VerticalScroll).scroll_end(animate=False)

    @work(exclusive=True, group="stuck")
    async def find_stuck(self) -> None:
        try:
            stuck = await _from_database(self.engine, {"op": "stuck"}, "stuck")
        except (ActionError, KeyError) as e:
            self.notify(inert(f"cannot look for stuck tasks: {e}"), severity="error", markup=False)
            return
        self._show_stuck(stuck)

    def _show_stuck(self, stuck: list[dict[str, str]]) -> None:
        """The stuck table takes room only when there is something stuck to act on."""
        table = self.query_one("#stuck", DataTable)
        table.clear()
        self.stuck_ids = [s["id"] for s in stuck]
        for s in stuck:
            shown = (s["task_path"], s["queue"], label(s["worker_id"]), s["reason"])
            table.add_row(*map(Text, shown), key=s["id"])
        table.display = bool(stuck)
        self.query_one("#stuck-label", Label).update(
            "Stuck tasks: RUNNING, but their worker process is gone (e requeue, f fail)"
            if stuck
            else "Stuck tasks: none"
        )

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

    @work(group="stuck-action")
    async def act_on_stuck(self, task_id: str, fail: bool) -> None:
        request = {"op": "fail" if fail else "requeue", "id": task_id}
        try:
            changed = await _from_database(self.engine, request, "changed")
        except (ActionError, KeyError) as e:
            self.notify(inert(f"cannot change task {task_id}: {e}"), severity="error", markup=False)
            return
        verb = "marked failed" if fail else "requeued"
        self.notify(
            f"task {task_id} {verb}" if changed else f"task {task_id} was not stuck any more",
            markup=False,
        )
        self.find_stuck()
