"""The console: a pane per process, live output and numbers, keys to act on them.

The app knows the engine only through its interface (``tui.engine.api.Engine``: views,
output by sequence, actions), in this process or across the control socket, and redraws
what changed: logs of visible panes when lines arrive (at most ten times a second),
numbers when a new sample or state does, clock texts (uptimes, countdowns) when the figure
shown changes. An idle console so costs next to nothing. Every action runs as a worker, so
no key ever waits for a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.driver import Driver as AnyDriver
from textual.geometry import Size
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static

from backends.diagnostics import Finding
from tui import format as fmt
from tui.engine.api import ActionError, Engine
from tui.engine.views import EngineView, ProcessView, State
from tui.terminal import REFUSE_SUSPEND, Driver
from tui.widgets.dialogs import ConfirmScreen, FindingsScreen, HelpScreen, ScaleScreen
from tui.widgets.logview import LogView
from tui.widgets.pane import ProcessPane, finding_text, show
from tui.widgets.proclist import ProcessList
from tui.widgets.taskpanel import TaskPanel

COMPACT_WIDTH = 100  # below this (or COMPACT_HEIGHT), a list of processes replaces the grid
COMPACT_HEIGHT = 30
KEY_NAMES = {
    "plus": "+",
    "minus": "-",
    "slash": "/",
    "question_mark": "?",
    "escape": "Esc",
    "end": "End",
    "left": "←",
    "right": "→",
    "ctrl+c": "Ctrl+C",
    "ctrl+z": "Ctrl+Z",
}
LOG_POLL = 0.1  # at least this long between two looks at the rings while lines arrive


def hang_up(signum: int, frame: object) -> None:
    """The terminal is gone (an SSH session dropped): leave at once.

    Textual blocks for ever writing to a terminal that vanished, and the event loop may
    already be stuck in such a write, so nothing that needs the loop can be trusted here.
    Nothing needs doing either: the engine runs in its own process and hears the console's
    connection close; it stops everything gracefully if this console owned it (a foreground
    run that was not detached), and goes on serving otherwise.
    """
    os._exit(128 + signal.SIGHUP)


class ConsoleApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "prodserver-tui"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "restart", "Restart", id="restart"),
        Binding("s", "stop_start", "Stop/start", id="stop-start"),
        Binding(
            "plus,equals_sign", "scale_up", "Scale the main knob up", id="scale-up", show=False
        ),
        Binding("minus", "scale_down", "Scale the main knob down", id="scale-down", show=False),
        Binding("S", "scale_dialog", "Scale", id="scale"),
        Binding("R", "restart_all", "Restart all", id="restart-all", show=False),
        Binding("t", "tasks", "Tasks", id="tasks"),
        Binding("D", "check_deploy", "Run check --deploy", id="check-deploy", show=False),
        Binding("z", "zoom", "Zoom", id="zoom", show=False),
        Binding("slash", "search", "Find", id="search"),
        Binding("n", "find(True)", "Next match", id="find-next", show=False),
        Binding("N", "find(False)", "Previous match", id="find-previous", show=False),
        Binding("w", "wrap", "Wrap", id="wrap", show=False),
        Binding("end", "follow", "Follow", id="follow", show=False),
        Binding("y", "copy", "Copy visible log", id="copy", show=False),
        Binding("left", "cycle(-1)", "Previous process", id="previous", show=False),
        Binding("right", "cycle(1)", "Next process", id="next", show=False),
        *(
            Binding(str(n), f"pick_number({n})", f"Process {n}", id=f"pick-{n}", show=False)
            for n in range(1, 10)
        ),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("escape", "escape", "Close search / unzoom", show=False),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("d", "detach", "Detach", id="detach", show=False),
        Binding(
            "ctrl+c", "force_quit", "Kill all and quit", id="force-quit", show=False, priority=True
        ),
        Binding(
            "ctrl+z",
            "suspend_process",
            "Suspend: refused (processes would block)",
            id="suspend",
            show=False,
            priority=True,
        ),
    ]

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        start: bool = True,
        host: str | None = None,
        info_every: float = 1.0,
        owner: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.start_processes = start
        self.host = host or socket.gethostname()
        self.info_every = info_every  # numbers and sparklines; a frozen scene sets it high
        # The owner started the engine for this run (a foreground console): q stops everything.
        # An attached console only looks: q (and d) leave everything running.
        self.owner = owner
        self.state = engine.view()
        self.panes = [
            ProcessPane(view, engine.output(view.name), i + 1, clock)
            for i, view in enumerate(self.state.processes)
        ]
        self.process_list = ProcessList(list(self.state.processes), clock)
        self.current = self.panes[0]
        self.quitting = False
        self.detached = False  # left with d (or an attached console's q): everything goes on
        self.zoomed = False
        self._lines_came = asyncio.Event()  # set by on_lines, waited for by follow_logs
        self.header = Static(id="header", markup=False)  # kept: the tick may outlive the screen
        self._findings: tuple[Finding, ...] | None = None  # shown now
        self._asked: dict[tuple[str, str], int] = {}  # scale targets sent, not yet settled
        self._panes_mounted = False  # the panes exist: a view may be drawn into them
        engine.watch(self)

    def get_driver_class(self) -> type[AnyDriver]:
        """Ours on Linux and macOS: a terminal that stops reading never stalls the loop."""
        return Driver if os.name == "posix" else super().get_driver_class()

    def action_suspend_process(self) -> None:
        """Ctrl+Z: refused, with the reason (see ``tui.terminal``)."""
        self.notify(REFUSE_SUSPEND, severity="warning", timeout=10, markup=False)

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self.header
        yield Static(id="findings", markup=False)
        yield self.process_list
        with Container(id="panes"):
            yield from self.panes
        yield Footer()

    def on_mount(self) -> None:
        self._panes_mounted = True
        self.pick(self.panes[0])
        self.reflow()
        self.run_worker(self.follow_logs(), group="logs")
        self.set_interval(self.info_every, self.tick_info)
        self.tick_info()
        loop = asyncio.get_running_loop()
        # Not possible outside the main thread (tests): there is nothing to hook then.
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, self.action_quit)
            signal.signal(signal.SIGHUP, hang_up)
        if self.start_processes:
            self.run_worker(self.engine.start_all(), group="control")

    def on_resize(self, event: events.Resize) -> None:
        self.reflow(event.size)

    def reflow(self, size: Size | None = None) -> None:
        """Pick the layout for the terminal: a grid that fits, or list + one pane.

        The layout belongs to the main screen, not to whichever screen is on top: a resize
        made while a dialog or the task panel is open must still lay the panes out for the
        size they will have when it closes.
        """
        width, height = size or self.size
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        main = self.default_screen
        main.set_class(compact and not self.zoomed, "compact")
        main.set_class(self.zoomed, "zoomed")
        n = len(self.panes)
        columns = 1 if n == 1 else 2 if width < 180 or n <= 4 else 3
        grid = self.query_one("#panes", Container)
        if compact or self.zoomed:
            grid.styles.grid_size_columns, grid.styles.grid_size_rows = 1, 1
        else:
            grid.styles.grid_size_columns = columns
            grid.styles.grid_size_rows = math.ceil(n / columns)

    # -- the engine's events (same loop, same thread) ------------------------------------------

    def on_lines(self, name: str) -> None:
        """Output is pulled by the log views, batched: only wake the loop that pulls it."""
        self._lines_came.set()

    def on_view(self) -> None:
        """A state or the findings changed: redraw what they change, now."""
        # The engine outlives the app (it stops processes after), and a remote engine's view
        # can come while the app starts, before its panes exist: on_mount draws it then.
        if not self.is_running or not self._panes_mounted:
            return
        self.see(self.engine.view(), at_once=True)

    def see(self, view: EngineView, at_once: bool = False) -> None:
        """The engine's newest view into every pane; a pane redraws when its texts may differ
        (``at_once``: a state changed, redraw those whose view changed without waiting)."""
        self.state = view
        for pane, process in zip(self.panes, view.processes, strict=True):
            changed = process != pane.child
            pane.see(process, view.stats)
            if at_once and changed and pane.is_mounted:
                pane.update_info()
        self.process_list.children_ = list(view.processes)
        if self.process_list.is_mounted:
            self.process_list.refresh()
        if view.findings != self._findings:
            self.show_findings(view.findings)

    def show_findings(self, findings: tuple[Finding, ...]) -> None:
        """Each diagnostic in its entry's pane; the project-wide ones under the header."""
        if not self.is_running:
            return
        self._findings = findings
        names = {pane.child.name for pane in self.panes}
        for pane in self.panes:
            pane.show_findings([f for f in findings if f.entry == pane.child.name])
        banner = self.query_one("#findings", Static)
        general = [f for f in findings if f.entry not in names]
        banner.set_class(bool(general), "shown")
        show(banner, Text("\n").join(finding_text(f) for f in general))

    # -- timers --------------------------------------------------------------------------------

    async def follow_logs(self) -> None:
        """Pull new lines when some arrived, never while none do; during a flood at most
        ten times a second, so it costs ten redraws a second, not one per line. A pane
        coming into view catches up by itself (``ProcessPane.on_show``)."""
        while True:
            await self._lines_came.wait()
            self._lines_came.clear()
            for pane in self.panes:
                if pane.display and pane.region.height:
                    pane.log_view.sync()
            await asyncio.sleep(LOG_POLL)

    def tick_info(self) -> None:
        """Once a second: sparklines move on; texts are rebuilt only where they may differ."""
        now = self.clock()
        due = False
        self.see(self.engine.view())
        for pane in self.panes:
            pane.sample()
            if pane.stale(now):
                due = True
                pane.update_info()
        if due and self.process_list.display:
            self.process_list.refresh()
        show(self.header, self.header_text())

    def header_text(self) -> Text:
        """Most useful first: states and totals survive a narrow terminal, names go first."""
        children = self.state.processes
        counts: dict[State, int] = {}
        for c in children:
            counts[c.state] = counts.get(c.state, 0) + 1
        head = Text("prodserver-tui", style="bold")
        parts: list[fmt.Part] = []
        if self.quitting:
            parts.append(("stopping… q again or Ctrl+C kills", "bold yellow", fmt.CRITICAL))
        parts += [
            (f"{fmt.STATE_MARK[state]} {n} {state}", fmt.STATE_STYLE[state])
            for state, n in counts.items()
        ]
        usages = [c.usage for c in children if c.usage]
        parts.append((f"cpu {sum(u.cpu for u in usages):.1f}%", ""))
        parts.append((f"mem {fmt.size(sum(u.rss for u in usages))}", ""))
        stats = self.state.stats
        if stats is not None and stats.error:
            parts.append((f"tasks: {stats.error}", "red", fmt.CRITICAL))
        elif stats is not None:
            failed = sum(q.failed_1m for q in stats.queues)
            parts.append((f"tasks {fmt.rate(sum(q.throughput_60s for q in stats.queues))}", ""))
            parts.append((f"ready {sum(q.ready for q in stats.queues)}", ""))
            parts.append(fmt.failed(failed))
        if self.state.settings_module:
            parts.append((self.state.settings_module, "dim", fmt.LOW))
        parts.append((self.host, "dim", fmt.LOW))
        return fmt.fit(head, parts, max(20, self.size.width - 2))

    # -- focus ---------------------------------------------------------------------------------

    def pick(self, pane: ProcessPane) -> None:
        for other in self.panes:
            other.set_class(other is pane, "current")
        self.current = pane
        self.process_list.current = self.panes.index(pane)
        self.process_list.refresh()
        if self.focused is None or pane not in self.focused.ancestors_with_self:
            pane.log_view.focus()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        for pane in self.panes:
            if pane in event.widget.ancestors_with_self and pane is not self.current:
                self.pick(pane)

    def on_process_list_picked(self, message: ProcessList.Picked) -> None:
        self.pick(self.panes[message.index])

    def action_cycle(self, step: int) -> None:
        self.pick(self.panes[(self.panes.index(self.current) + step) % len(self.panes)])

    def action_pick_number(self, number: int) -> None:
        if number <= len(self.panes):
            self.pick(self.panes[number - 1])

    # -- the command palette (Ctrl+P) ----------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action on every process by name, then the app-wide ones and Textual's own,
        whose Quit gives way to ours: it says what quitting does here (a graceful stop)."""
        for pane in self.panes:
            yield from self.process_commands(pane)
        yield SystemCommand(
            "restart all", "every process, one after the other", self.action_restart_all
        )
        yield SystemCommand(
            "run check --deploy",
            "Django's deployment checks (manage.py check --deploy), in a dialog",
            self.action_check_deploy,
        )
        yield SystemCommand("help", "every key", self.action_help)
        if self.owner:
            yield SystemCommand(
                "quit", "stop every process gracefully, then exit", self.action_quit
            )
        yield SystemCommand(
            "detach", "leave every process running, exit this console", self.action_detach
        )
        yield SystemCommand(
            "stop everything",
            "stop every process gracefully and the engine, then exit",
            self.action_stop_everything,
        )
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")

    def process_commands(self, pane: ProcessPane) -> Iterator[SystemCommand]:
        """The keys' actions on one process: each picks the process, then acts on it. The
        palette reads titles as markup: a name from the settings is escaped to stay text."""
        name = escape(pane.child.name)

        def command(title: str, hint: str, action: Callable[[], object]) -> SystemCommand:
            return SystemCommand(f"{name}: {title}", hint, partial(self.act_on, pane, action))

        yield command("restart", "graceful stop, then start", self.action_restart)
        yield command("stop / start", "stop it, or start it again", self.action_stop_start)
        yield command("zoom", "this pane alone, full screen", self.action_zoom)
        yield command("search the log", "find text in its output", self.action_search)
        if pane.child.knobs:
            yield command("scale…", "every knob", self.action_scale_dialog)
            if pane.child.main_knob:
                knob = pane.child.main_knob
                yield command(f"{knob} +1", f"one more {knob}", self.action_scale_up)
                yield command(f"{knob} -1", f"one fewer {knob}", self.action_scale_down)
        if pane.child.kind == "tasks":
            yield command("task panel", "queues, failures", self.action_tasks)

    def act_on(self, pane: ProcessPane, action: Callable[[], object]) -> None:
        self.pick(pane)
        action()

    # -- actions on the current process --------------------------------------------------------

    def _control(self, what: str, job: Callable[[], Awaitable[object]]) -> None:
        """Run an action as a worker: the key returns at once, a refusal becomes a notice
        (an attached ``--read-only`` console refuses them all, saying so)."""
        if self.refused(what):
            return

        async def run() -> None:
            try:
                await job()
            except ActionError as e:
                self.notify(str(e), severity="error", markup=False)

        self.run_worker(run(), group="control", description=what)

    def refused(self, what: str) -> bool:
        """A read-only console says so instead of acting."""
        if self.engine.read_only:
            self.notify(f"read-only console: {what} refused", severity="warning", markup=False)
        return self.engine.read_only

    def action_restart(self) -> None:
        name = self.current.child.name
        self._control(f"restart {name}", partial(self.engine.restart, name))

    def action_stop_start(self) -> None:
        child = self.current.child
        if child.state in (State.STARTING, State.RUNNING, State.BACKOFF):
            self._control(f"stop {child.name}", partial(self.engine.stop, child.name))
        elif child.state is not State.STOPPING:
            self._control(f"start {child.name}", partial(self.engine.start, child.name))

    def action_restart_all(self) -> None:
        async def all_of_them() -> None:
            for pane in self.panes:
                if pane.child.state is not State.CONFIG_ERROR:
                    await self.engine.restart(pane.child.name)

        self._control("restart all", all_of_them)

    def action_scale_up(self) -> None:
        self._scale_main(+1)

    def action_scale_down(self) -> None:
        self._scale_main(-1)

    def _scale_main(self, step: int) -> None:
        child = self.current.child
        knob = child.main_knob
        if knob is None:
            self.notify(f"{child.name} has nothing to scale", severity="warning", markup=False)
            return
        # Two quick presses make a target two higher: the second counts from the first's
        # target, not from a view that may not show it yet.
        desired = next(k.desired for k in child.knobs if k.name == knob)
        value = self._asked.get((child.name, knob), desired) + step
        if value < 1:
            self.notify(f"{knob} cannot go below 1", severity="warning")
            return
        self.scale(self.current.child, {knob: value})

    def action_scale_dialog(self) -> None:
        child = self.current.child
        if not child.knobs:
            self.notify(f"{child.name} has nothing to scale", severity="warning", markup=False)
            return

        def apply(wanted: object) -> None:
            if isinstance(wanted, dict) and wanted:
                self.scale(child, wanted)

        self.push_screen(ScaleScreen(child.name, child.knobs), apply)

    def scale(self, child: ProcessView, wanted: dict[str, object]) -> None:
        """Live knobs change now; the others need a restart, which is asked for first."""
        live_knobs = {k.name for k in child.knobs if k.live}
        live = {k: v for k, v in wanted.items() if k in live_knobs}
        later = {k: v for k, v in wanted.items() if k not in live}

        def apply(changes: dict[str, object]) -> None:
            if self.refused(f"scale {child.name}"):
                return
            for k, v in changes.items():
                with contextlib.suppress(TypeError, ValueError):
                    self._asked[(child.name, k)] = int(str(v))

            async def steps() -> None:  # each recorded at once, applied by the engine
                try:
                    await asyncio.gather(
                        *(self.engine.scale(child.name, k, v) for k, v in changes.items())
                    )
                finally:
                    for k in changes:
                        self._asked.pop((child.name, k), None)

            self._control(f"scale {child.name}", steps)

        if live:
            apply(live)
        if later:
            what = ", ".join(f"{k}={v}" for k, v in later.items())

            def confirmed(yes: object) -> None:
                if yes:
                    apply(later)

            self.push_screen(
                ConfirmScreen(f"{what} cannot change while {child.name} runs: restart it with it?"),
                confirmed,
            )

    def action_check_deploy(self) -> None:
        """Django's ``check --deploy`` in a fresh process of the project, shown in a dialog."""
        self.notify("running manage.py check --deploy…")

        async def run() -> None:
            try:
                found = await self.engine.check_deploy()
            except ActionError as e:
                self.notify(str(e), severity="warning", markup=False)
                return
            self.push_screen(FindingsScreen("manage.py check --deploy", found))

        self.run_worker(run(), group="checks", exclusive=True)

    def action_tasks(self) -> None:
        if self.state.stats is None and not any(p.child.kind == "tasks" for p in self.panes):
            self.notify("no task worker in PRODUCTION_PROCESSES", severity="warning")
            return
        self.push_screen(TaskPanel(self.engine))

    # -- the log of the current process --------------------------------------------------------

    @property
    def log_view(self) -> LogView:
        return self.current.log_view

    def action_zoom(self) -> None:
        self.zoomed = not self.zoomed
        self.reflow()

    def action_search(self) -> None:
        self.current.open_search()

    def action_find(self, forward: bool) -> None:
        term = self.log_view.search_term
        if term and not self.log_view.find(term, forward):
            self.notify(f"{term!r} not found", severity="warning", markup=False)
        self.current.update_info()

    def action_wrap(self) -> None:
        self.log_view.wrap = not self.log_view.wrap

    def action_follow(self) -> None:
        self.log_view.resume()

    def action_copy(self) -> None:
        """What the view shows, and only that: not concealed (SGR 8) text nor invisible
        characters that would ride along into whatever the user pastes it into."""
        self.copy_to_clipboard(self.log_view.visible_text())
        self.notify("visible log copied to the clipboard (OSC 52)")

    def action_escape(self) -> None:
        if self.zoomed:
            self.action_zoom()
        self.current.close_search()

    def action_help(self) -> None:
        keys = [("1-9", "Pick process 1-9")] + [
            (KEY_NAMES.get(key := b.key.split(",")[0], key), b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding) and not b.key.isdigit()
        ]
        self.push_screen(HelpScreen(keys))

    # -- quitting ------------------------------------------------------------------------------

    def action_quit(self) -> None:  # type: ignore[override]
        """The owner's q stops everything (as the console always did); an attached console's
        q only leaves, as ``d`` does."""
        if self.owner:
            self.action_stop_everything()
        else:
            self.action_detach()

    def action_detach(self) -> None:
        """Leave every process running: the engine goes on without this console."""
        if self.quitting:
            return

        async def leave() -> None:
            try:
                await self.engine.detach()
            except ActionError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self.detached = True
            self.exit(0, return_code=0)

        self.run_worker(leave(), group="quit")

    def action_stop_everything(self) -> None:
        if self.quitting:
            self.action_force_quit()
            return
        if self.refused("stopping everything (d detaches)"):
            return
        self.quitting = True
        self.notify("stopping every process… q again or Ctrl+C to kill them now")
        self.tick_info()
        self.set_interval(0.5, self.tick_info)

        async def shutdown() -> None:
            try:
                code = 0 if await self.engine.stop_all() else 1
            except ActionError as e:
                self.notify(str(e), severity="error", markup=False)
                code = 1
            self.exit(code, return_code=code)

        self.run_worker(shutdown(), group="quit")

    def action_force_quit(self) -> None:
        """Ctrl+C: the owner kills everything; an attached console leaves, killing nothing
        (Ctrl+C is too easy to press in a terminal that only looks)."""
        if not self.owner:
            self.action_detach()
            return
        if not self.quitting:
            self.action_stop_everything()
        if not self.engine.read_only:
            self.engine.kill_all()
