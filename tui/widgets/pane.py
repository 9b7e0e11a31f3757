"""One process in one pane: who it is and how it is doing, then what it says.

Title: number, name, kind, state, pid, uptime, restarts, last exit, URL. Stats: CPU and
memory of its whole tree, scaling knobs now / configured, task counts (and how the worker
hears of new tasks) for task workers.
Sparklines: CPU and task throughput over the last minutes. Then the live log.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Sparkline, Static

from backends.diagnostics import Finding
from backends.snapshot import Snapshot
from backends.wakeup_line import POLLING
from tui import format as fmt
from tui.engine.output import Ring
from tui.engine.views import KnobView, ProcessView, State
from tui.widgets.logview import LogView

SEARCH_PLACEHOLDER = "search this log (Enter: find, Esc: close)"
HISTORY = 120  # samples kept for the sparklines: two minutes at one a second


def show(widget: Static, text: Text) -> None:
    """Update a Static only when its text changed; relayout only when its height changes:
    when the rows it has now are not the lines of the new text (a line fitted to a wider
    pane, laid out during a resize, wrapped; refitted, it must give that row back)."""
    before = widget.content
    if isinstance(before, Text) and before == text:
        return
    rows = text.plain.count("\n") + 1
    widget.update(text, layout=not isinstance(before, Text) or widget.size.height != rows)


STATUS_CLASS = {"5": ("red", fmt.CRITICAL), "4": ("yellow", fmt.HIGH)}  # style, priority


SEVERITY_STYLE = {"error": ("✖", "bold red"), "warning": ("▲", "yellow"), "info": ("●", "cyan")}


def finding_text(finding: Finding) -> Text:
    """One diagnostic: mark and what is wrong in its colour, then the fix."""
    mark, style = SEVERITY_STYLE.get(finding.severity, ("●", ""))
    return Text.assemble((f"{mark} {finding.what}", style), " — ", (finding.fix, ""))


def knob_part(view: KnobView) -> fmt.Part:
    """``workers 2``; ``workers 3/2`` away from the settings; ``workers scaling 2→4`` (observed
    →asked) until the process has it; ``workers 2→4 stuck: why`` when it cannot get there."""
    now = view.observed if view.observed is not None else view.desired
    if view.why:
        return (f"{view.name} {now}→{view.desired} stuck: {view.why}", "bold red", fmt.CRITICAL)
    if view.converging:
        return (f"{view.name} scaling {now}→{view.desired}", "bold yellow", fmt.HIGH)
    if now == view.configured:
        return (f"{view.name} {now}", "")
    return (f"{view.name} {now}/{view.configured}", "bold", fmt.HIGH)


def plot(sparkline: Sparkline, history: deque[float]) -> None:
    """A flat line shifted by one sample looks the same: do not redraw it."""
    data = list(history)
    if data != sparkline.data:
        sparkline.data = data


class ProcessPane(Vertical):
    DEFAULT_CSS = """
    ProcessPane { border: round $panel-lighten-2; height: 1fr; }
    ProcessPane:focus-within { border: round $accent; }
    ProcessPane .title { height: 1; width: 1fr; }
    ProcessPane .stats { height: auto; max-height: 3; width: 1fr; }
    ProcessPane .sparks { height: 1; }
    ProcessPane .sparks Static { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ProcessPane Sparkline { width: 1fr; height: 1; margin-right: 2; }
    ProcessPane .findings { display: none; height: auto; max-height: 4; }
    ProcessPane .findings.shown { display: block; }
    ProcessPane Input { display: none; height: 3; }
    ProcessPane Input.open { display: block; }
    """

    def __init__(
        self,
        view: ProcessView,
        ring: Ring,
        number: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(id=f"pane-{number}")
        self.child = view  # the engine's latest view of its process (``see``)
        self.stats: Snapshot | None = None  # the project's task statistics, for its queues
        self.ring = ring
        self.number = number
        self.clock = clock
        self.cpu_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)
        self.rate_history: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)
        self.log_view = LogView(ring)
        # Kept rather than queried: the app's tick visits every pane every second.
        self._title = Static(classes="title", markup=False)
        self._stats = Static(classes="stats", markup=False)
        self._sparks = Horizontal(classes="sparks")
        self._cpu_spark = Sparkline(list(self.cpu_history), id="cpu-spark")
        self._rate_spark = Sparkline(list(self.rate_history), id="rate-spark")
        self.due = 0.0  # clock time when the texts change by themselves (see ``stale``)
        self._drawn_for: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._stats
        with self._sparks:
            yield Static("cpu", markup=False)
            yield self._cpu_spark
            if self.child.kind == "tasks":
                yield Static("tasks/s", markup=False)
                yield self._rate_spark
        yield Static(classes="findings", markup=False)
        yield self.log_view

    def on_mount(self) -> None:
        self.update_info()

    def see(self, view: ProcessView, stats: Snapshot | None) -> None:
        """The engine's newest view; the texts are redrawn when ``stale`` says so."""
        self.child = view
        self.stats = stats if view.kind == "tasks" else None

    def on_resize(self) -> None:
        """The lines are fitted to the width: refit them now, not at the next sample."""
        self.update_info()

    def on_show(self) -> None:
        """A pane coming into view (zoom, compact list, resize) catches up with its log now:
        the app syncs logs only when lines arrive."""
        self.log_view.sync()

    def on_click(self) -> None:
        self.app.pick(self)  # type: ignore[attr-defined]

    # -- what is shown -------------------------------------------------------------------------

    def sample(self) -> None:
        """Once a second: push the newest sample into the sparklines."""
        usage = self.child.usage
        self.cpu_history.append(usage.cpu if usage else 0.0)
        plot(self._cpu_spark, self.cpu_history)
        if self.child.kind == "tasks":
            tasks = self.child.tasks
            self.rate_history.append((tasks.succeeded_1m + tasks.failed_1m) / 60 if tasks else 0.0)
            plot(self._rate_spark, self.rate_history)

    def update_info(self) -> None:
        """Redraw the title and stats lines, and only what changed: an idle console must
        not relayout the screen every second (that alone cost 2 % of a core)."""
        self.due = math.inf  # the texts lower it for each part that follows the clock
        self._drawn_for = self._inputs()
        self._sparks.display = self.child.state is not State.CONFIG_ERROR
        show(self._title, self.title_text())
        show(self._stats, self.stats_text())

    def stale(self, now: float) -> bool:
        """Whether the texts may show something new, without building them (the app asks
        every second; a change of state redraws the pane at once): the clock passed the unit
        of a shown countdown or uptime, or what they are made of changed: a new sample (the
        supervisor keeps the old one while equal), task statistics, the log's "N new" count and
        search position, lines that the pane counts as requests or tasks, lines the ring dropped,
        a scale's progress, a worker's wake-up mode."""
        return now >= self.due or self._inputs() != self._drawn_for

    def _inputs(self) -> tuple[object, ...]:
        c = self.child
        return (
            c.usage,
            c.tasks,
            self.stats,
            self.log_view.waiting,
            self.log_view.search_status,
            c.events,
            self.ring.dropped,
            c.knobs,  # "scaling 2→4" until the process has it
            c.wake_up,
        )

    def _ticking(self, every: float, since: float) -> None:
        """A shown figure changes every ``every`` seconds counted from ``since``."""
        now = self.clock()
        self.due = min(self.due, now + every - (now - since) % every)

    @property
    def width(self) -> int:
        return self.content_size.width or 80

    def title_text(self) -> Text:
        c = self.child
        head = Text.assemble(
            (f" {self.number} ", "bold reverse"),
            (f" {c.name} ", "bold"),
            (c.kind, "dim"),
            "  ",
            (f"{fmt.STATE_MARK[c.state]} {c.state}", fmt.STATE_STYLE[c.state]),
        )
        parts: list[fmt.Part] = []
        detail = c.detail
        if c.state is State.STOPPING:
            parts.append((detail, "bold yellow", fmt.CRITICAL))
            self._ticking(1, 0)  # its countdown to SIGKILL
        elif c.state is State.BACKOFF and c.next_try_at is not None:
            retry = f"retry in {max(0, c.next_try_at - self.clock()):.0f}s"
            parts.append((retry, "yellow", fmt.HIGH))
            self._ticking(1, c.next_try_at)
        waiting = self.log_view.waiting
        if waiting:
            parts.append((f"⏸ {waiting} new (End)", "bold yellow", fmt.HIGH))
        found = self.log_view.search_status
        if found:
            parts.append((found, "bold", fmt.HIGH))
        if self.ring.dropped:  # the ring is bounded: the oldest lines go, and it says how many
            parts.append((f"{self.ring.dropped} older lines dropped", "dim", fmt.LOW))
        url = c.url
        if url and c.state in (State.STARTING, State.RUNNING):
            if c.answered_by:  # another program's socket answers: not ready, and whose it is
                parts.append((f"port held by {c.answered_by}", "bold red", fmt.CRITICAL))
            elif c.healthy is False:
                parts.append(("not answering", "bold red", fmt.CRITICAL))
            elif c.ready_after is not None:
                parts.append((f"ready in {c.ready_after:.1f}s", "green", fmt.LOW))
            elif c.probed:  # HEALTH False: nothing is waited for
                parts.append(("waiting for HTTP", "yellow"))
            parts.append((url, "underline cyan", fmt.LOW))
        if c.pid is not None:
            parts.append((f"pid {c.pid}", "", fmt.LOW))
            if c.started_at is not None:
                up = self.clock() - c.started_at
                parts.append((f"up {fmt.duration(up)}", "", fmt.LOW))
                self._ticking(fmt.duration_step(up), c.started_at)
        if c.restarts:
            parts.append((f"↻{c.restarts}", "dark_orange", fmt.CRITICAL))
        if c.last_exit is not None:
            code = c.last_exit.code
            text = f"last exit {code}" if code is not None else f"last signal {c.last_exit.signal}"
            parts.append((text, "red" if code else "dim", fmt.CRITICAL if code != 0 else fmt.LOW))
        return fmt.fit(head, parts, self.width)

    def stats_text(self) -> Text:
        """One line of system numbers; task workers get a second line of task numbers."""
        c = self.child
        if c.state is State.CONFIG_ERROR:
            return Text(c.detail, style="red")  # the error, masked; wraps, up to three lines
        u = c.usage
        head = Text(f"cpu {u.cpu:5.1f}%" if u else "cpu     -")
        parts: list[fmt.Part] = [(f"mem {fmt.size(u.rss if u else None)}", "")]
        if u and u.processes > 1:
            parts.append((f"{u.processes} procs", "dim", fmt.LOW))
        parts += [knob_part(view) for view in c.knobs]
        if c.events is not None:
            parts += self.event_parts()
        line = fmt.fit(head, parts, self.width)
        if c.kind != "tasks":
            return line
        tasks = c.tasks
        task_head = Text("tasks", style="bold")
        stats = self.stats
        if stats is not None and stats.error:  # e.g. the database is down: say so, cut to fit
            room = max(10, self.width - task_head.cell_len - 2)
            error = stats.error if len(stats.error) <= room else stats.error[: room - 1] + "…"
            error_part: fmt.Part = (error, "red", fmt.CRITICAL)
            return Text("\n").join([line, fmt.fit(task_head, [error_part], self.width)])
        task_parts: list[fmt.Part] = []
        if tasks is not None:
            task_parts += [
                (fmt.rate((tasks.succeeded_1m + tasks.failed_1m) / 60), "bold"),
                (f"running {tasks.running}", ""),
                fmt.failed(tasks.failed_1m),
            ]
        ready = self.ready_tasks()
        if ready is not None:
            task_parts.append((f"ready {ready}", "yellow" if ready else ""))
        if not task_parts:
            task_parts.append(("waiting for statistics", "dim"))
        if c.wake_up:  # polling, the slow way, is worth a colour; the fast ways give way first
            polling = any(w.mode == POLLING for w in c.wake_up)
            wake = f"wake-up {fmt.wake_up(c.wake_up, counted=False)}"
            task_parts.append((wake, "yellow", fmt.NORMAL) if polling else (wake, "dim", fmt.LOW))
        return Text("\n").join([line, fmt.fit(task_head, task_parts, self.width)])

    def event_parts(self) -> list[fmt.Part]:
        """Requests by status class for web servers, task outcomes for Celery, per minute."""
        assert self.child.events is not None
        rate = fmt.rate(self.child.events.per_second)
        kinds = self.child.events.by_kind
        if kinds:  # rates and counts over the last minute fall as seconds pass
            self._ticking(1, 0)
        if self.child.kind == "celery":
            return [
                (f"tasks {rate}", "bold"),
                (f"ok/1m {kinds.get('succeeded', 0)}", "", fmt.LOW),
                fmt.failed(kinds.get("raised", 0)),
            ]
        parts: list[fmt.Part] = [(f"req {rate}", "bold")]
        for digit, n in kinds.items():
            style, rank = STATUS_CLASS.get(digit, ("", fmt.LOW))
            parts.append((f"{digit}xx {n}", style, rank))
        return parts

    def ready_tasks(self) -> int | None:
        stats = self.stats
        if stats is None or stats.error or not self.child.queues:
            return None
        wanted = set(self.child.queues)
        return sum(q.ready for q in stats.queues if "*" in wanted or q.queue in wanted)

    def show_findings(self, findings: list[Finding]) -> None:
        """The diagnostics about this entry, above its log; hidden when there are none."""
        banner = self.query_one(".findings", Static)
        banner.set_class(bool(findings), "shown")
        show(banner, Text("\n").join(finding_text(f) for f in findings))

    # -- search --------------------------------------------------------------------------------

    def open_search(self) -> None:
        """The field is made on first use: one in every pane cost 55 KB each, 3 MB with 60
        entries, for a search most panes never see."""
        found = self.query(Input)
        search = found.first() if found else Input(placeholder=SEARCH_PLACEHOLDER)
        if not found:
            self.mount(search)
        search.add_class("open")
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        found = self.log_view.find(event.value)
        self.update_info()
        if not found and event.value:
            self.app.notify(
                f"{event.value!r} not found in {self.child.name}", severity="warning", markup=False
            )
        event.input.remove_class("open")
        self.log_view.focus()

    def close_search(self) -> None:
        self.query(Input).remove_class("open")
        self.log_view.focus()
