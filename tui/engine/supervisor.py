"""The engine: every child process of the project, driven through one object. No UI.

The console, the headless mode and the tests all drive this object: start, stop, restart
and scale entries, hear their lines and states, read their usage and the task statistics.
A watchdog process stops every recorded descendant if this process dies without doing so.
Once ``stop_all`` begins, nothing starts again (``stopping``, checked where every start spawns).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from backends import dbident, dbslots
from backends.base import Launch, Project
from backends.snapshot import failed, from_json
from tui.engine.child import Child
from tui.engine.logfiles import LogFiles, tail
from tui.engine.output import Line, Ring, inert_all
from tui.engine.sampler import Sampler, quiet
from tui.engine.stats_client import HelperError, HelperFailed, StatsHelper
from tui.engine.stats_helper import finding_from_json, worker_json
from tui.engine.views import EngineView, State, Usage
from tui.engine.watchdog_client import Watchdog
from tui.project import Entry
from tui.redact import Redactor

if TYPE_CHECKING:
    from backends.diagnostics import Finding, Worker
    from backends.snapshot import Snapshot, WorkerCounts

POLL_TIMEOUT = 60.0  # s: a poll that long is stuck (a database that never answers): replaced
SETUP_TIMEOUT = 300.0  # s: the setup checks load the whole project and its migrations
STARTED_WAIT = 10.0  # s: the helper starts once no child is starting, or after this long
SETUP_RETRY = 1.0  # s: asked again of a new helper (the helper's backoff paces its starts)
ASK_TIMEOUT = 60.0  # s: a traceback, the stuck tasks, an action on one
HISTORY = 1_000  # lines of each log file put back in its ring at start
REFUSED_KEPT = 5  # lines per entry saying the database refused it, kept until the next poll


class Listener(Protocol):
    def on_lines(self, child: Child, lines: list[Line]) -> None: ...
    def on_state(self, child: Child) -> None: ...


class Supervisor:
    """Starts, stops, restarts and samples every entry; listeners hear lines and states."""

    def __init__(
        self,
        entries: Sequence[Entry],
        ring_lines: int = 10_000,
        watchdog: bool = True,
        sample_every: float = 1.0,
        idle_sample_every: float = 5.0,
        stats_every: float = 1.5,
        redact: Redactor | None = None,
        project: Project | None = None,
        watch: dict[str, float] | None = None,
        logs: LogFiles | None = None,
    ) -> None:
        self.redact = redact or Redactor.for_project()  # for every line the console writes
        self.children = {e.name: Child(e, self, Ring(max_lines=ring_lines)) for e in entries}
        self.sampler = Sampler()
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._use_watchdog = watchdog
        self._watchdog: Watchdog | None = None
        self.stopping = False  # stop_all began: no start may spawn a process any more
        self.launched = False  # start_all started every entry once
        self._sample_every = sample_every
        self._idle_sample_every = max(sample_every, idle_sample_every)
        self._sample_wait = sample_every  # grows while nothing changes, see _sample_forever
        self._stirred = asyncio.Event()  # something happened: sample at the normal pace
        self._sampling: asyncio.Task[None] | None = None
        self.stats: Snapshot | None = None  # task statistics, when an entry is a task worker
        self._stats_every = stats_every
        self._stats_wanted = stats_every > 0 and any(e.kind == "tasks" for e in entries)
        self._stats: asyncio.Task[None] | None = None
        self._diagnosed: asyncio.Task[None] | None = None
        # Diagnostics run only for a real project (the CLI passes it): setup once, then runtime
        # checks on each statistics poll. ``findings`` is what they say now, setup first.
        # Both, and the statistics, run in the statistics helper: they need the project's apps.
        self.project = project
        self.helper: StatsHelper | None = None
        if self._stats_wanted or project is not None:
            self.helper = _helper(entries, project, watch, lambda: self.stopping, self.watch)
        self.findings: list[Finding] = []
        self._setup_findings: list[Finding] = []
        self._runtime_findings: list[Finding] = []
        # port-in-use met by a probe, per entry: kept apart so the setup check cannot undo it
        self._ports_taken: dict[str, Finding] = {}
        self._refused: dict[str, list[str]] = {}  # output saying so, for the runtime checks
        # Each entry's last word on its database, with the pid that said it: sent with every
        # poll (said once at start, it must outlive a replaced helper).
        self._databases: dict[str, tuple[int | None, str]] = {}
        self.setup_checked = False  # the setup checks have run (their findings are in)
        self.logs = logs  # every entry's lines also go to its file there; closed by stop_all
        if logs is not None:
            self._remember(logs, ring_lines)

    def _remember(self, logs: LogFiles, ring_lines: int) -> None:
        """The end of each entry's log file goes first in its ring: a console attached after
        the engine restarted sees what came before (a crash, the last requests)."""
        for child in self.children.values():
            try:
                before = tail(logs.folder, child.name, min(ring_lines, HISTORY))
            except OSError:  # unreadable (a planted link): the writer says why, in the pane
                continue
            if not before:
                continue
            for line in before:
                child.ring.append(line.stream, [line.text], at=line.time)
            child.ring.append("sys", [f"-- above: the end of {child.name}'s log before this run"])

    def view(self, settings_module: str = "", now: float | None = None) -> EngineView:
        """What clients see; ``now`` is when the rates in it are counted up to."""
        now = time.time() if now is None else now
        return EngineView(
            processes=tuple(c.view(now) for c in self.children.values()),
            stats=self.stats,
            findings=tuple(self.findings),
            settings_module=settings_module,
            stopping=self.stopping,
            launched=self.launched,
        )

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    # -- control ---------------------------------------------------------------------------

    async def start_all(self) -> None:
        if self._use_watchdog and self._watchdog is None and not self.stopping:
            self._watchdog = Watchdog(self._running, self._say)
            await self._watchdog.start()
        loop = asyncio.get_running_loop()
        if self._sampling is None:
            self._sampling = loop.create_task(self._sample_forever())
        # The children first: the statistics and the checks load the whole project, and a
        # web server that answers sooner matters more than a finding that shows sooner.
        for child in self.children.values():
            if child.state is State.CONFIG_ERROR:
                child._set(State.CONFIG_ERROR)
            else:
                await child.start()
        self.launched = True
        if self.project is not None and self._diagnosed is None and not self.stopping:
            self._diagnosed = loop.create_task(self._diagnose_setup())
        if self._stats_wanted and self._stats is None and not self.stopping:
            self._stats = loop.create_task(self._stats_forever())

    async def start(self, name: str) -> None:
        await self.children[name].start()

    async def stop(self, name: str) -> None:
        await self.children[name].stop()

    async def restart(self, name: str) -> None:
        await self.children[name].restart()

    def scale(self, name: str, knob: str, value: object) -> Awaitable[bool]:
        self.stir()
        return self.children[name].scale(knob, value)

    async def wait_for(self, condition: Callable[[], bool], every: float = 0.05) -> None:
        while not condition():
            await asyncio.sleep(every)

    async def stop_all(self) -> bool:
        """Stop everyone at once; True when none had to be killed. From here on nothing starts:
        a restart, a retry or a scale that resumes later finds ``stopping`` set."""
        self.stopping = True
        await asyncio.gather(*(c.stop() for c in self.children.values()))
        for task in (self._sampling, self._stats, self._diagnosed):
            if task is not None:
                task.cancel()
        self._sampling = self._stats = self._diagnosed = None
        for task in list(self._tasks):
            task.cancel()
        if self.helper is not None:
            await self.helper.close()
        if self._watchdog is not None:
            await self._watchdog.close()
            self._watchdog = None
        if self.logs is not None:  # the children's last lines are in: flushed off the loop
            await asyncio.to_thread(self.logs.close)
        return not any(c.last_exit and c.last_exit.forced for c in self.children.values())

    def kill_all(self) -> None:
        for child in self.children.values():
            child.kill()
        if self.helper is not None:
            self.helper.kill()

    # -- plumbing for children -------------------------------------------------------------

    def watch(self, pid: int, launch: Launch) -> None:
        """Tell the watchdog about a new child, so it stops with us whatever happens."""
        if self._watchdog is not None:
            self._watchdog.register(pid, launch)

    def _running(self) -> list[tuple[int, Launch]]:
        """Every child with a process, the statistics helper too, for a new watchdog to guard."""
        running = [(c.pid, c._launch) for c in self.children.values() if c.pid is not None]
        if self.helper is not None and self.helper.pid is not None:
            running.append((self.helper.pid, self.helper.launch))
        return running

    def _say(self, text: str) -> None:
        """A line of the console's own in every pane (the watchdog's fate concerns all)."""
        for child in self.children.values():
            child.note(text)

    def emit_lines(self, child: Child, stream: str, lines: list[str]) -> None:
        self.stir()
        first = child.ring.next_seq
        child.ring.append(stream, lines)
        if stream != "sys":
            if self.project is not None:
                self._note_for_checks(child, lines)
            if child.kind == "tasks":  # each worker process says how it hears of new tasks
                child.wake_ups.hear(lines, child.usage.pids if child.usage else frozenset())
        listened = self._listeners or child.events is not None or child.waits_for_line
        if not listened and self.logs is None:
            return
        kept = child.ring.since(first)
        if self.logs is not None:
            self.logs.write(child.name, kept)
            for name, problem in self.logs.problems().items():
                self.children[name].note(problem)  # (its own line goes to the failing file)
        if listened:
            if stream != "sys":
                child.saw(kept)
            for listener in self._listeners:
                listener.on_lines(child, kept)

    def _note_for_checks(self, child: Child, lines: list[str]) -> None:
        """What the helper's runtime checks need of an entry's output: a database that refused
        it (the words around it) and the database it says it uses (its last report)."""
        text = "\n".join(lines)
        if dbslots.refused(text):
            said = [_around_refusal(line) for line in lines if dbslots.refused(line)]
            self._refused[child.name] = [*self._refused.get(child.name, []), *said][-REFUSED_KEPT:]
        if dbident.MARK in text:
            reports = [x for x in lines if x.startswith(dbident.MARK) and len(x) <= dbident.LONGEST]
            if reports:
                self._databases[child.name] = (child.pid, reports[-1])

    def emit_state(self, child: Child) -> None:
        self.stir()
        # its own socket answers now (or it has no probe): whatever held its port let go
        if child.state is State.RUNNING and child.healthy is not False:
            held = ("port-in-use", child.name, "")
            taken = self._ports_taken.pop(child.name, None)
            if taken or any(f.key == held for f in self._setup_findings):
                self._publish(setup=[f for f in self._setup_findings if f.key != held])
        for listener in self._listeners:
            listener.on_state(child)

    def port_taken(self, child: Child, port: int, holder: str) -> None:
        """Another program answered in place of ``child``: its port-in-use finding (the setup
        check's, or a new one when the port was taken later) names that program now."""
        from backends.diagnostics.setup import port_in_use

        self._ports_taken[child.name] = port_in_use(child.name, port, holder)
        self._publish()

    def spawn_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def stir(self) -> None:
        """Output, a state change or a scale: sample at the normal pace again, from now."""
        self._sample_wait = self._sample_every
        self._stirred.set()

    async def _sample_forever(self) -> None:
        """Every ``sample_every`` seconds, and less often while nothing happens.

        Reading /proc for every tree is most of what an idle console does, so while every
        tree is idle and unchanged the pause doubles up to ``idle_sample_every``; output, a
        state change, a scale or a tree that changed brings it back to ``sample_every``.
        """
        loop = asyncio.get_running_loop()
        while True:
            roots = {c.name: c.pid for c in self.children.values() if c.pid is not None}
            self._stirred.clear()
            began = time.monotonic()
            usage = await loop.run_in_executor(None, self.sampler.sample, roots)
            calm = True
            for child in self.children.values():
                now = usage.get(child.name) if child.pid is not None else None
                if child.pid is not None:
                    calm = calm and now is not None and quiet(child.usage, now)
                if now != child.usage:  # kept while equal: panes redraw when it is replaced
                    child.usage = now
                child.wake_ups.sampled(now.pids if now else frozenset(), began)
            if self._watchdog is not None:
                self._watchdog.descendants(
                    {c.pid: c.usage.pids for c in self.children.values() if c.pid and c.usage}
                )
            calm = calm and not self._stirred.is_set()
            self._sample_wait = (
                min(2 * self._sample_wait, self._idle_sample_every) if calm else self._sample_every
            )
            await asyncio.sleep(self._sample_every)
            if self._sample_wait > self._sample_every:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stirred.wait(), self._sample_wait - self._sample_every
                    )

    async def _stats_forever(self) -> None:
        """Task statistics (and the runtime checks) from the helper; attributed by pid here."""
        assert self.helper is not None
        await self.started(STARTED_WAIT)
        while not self.stopping:
            refused, self._refused = self._refused, {}
            request = {
                "op": "poll",
                "workers": [worker_json(w) for w in self._task_workers()],
                "refused": refused,
                "databases": self._databases,
            }
            found = None
            try:
                answer = await self.helper.ask(request, POLL_TIMEOUT)
                stats = from_json(answer["stats"])
                if answer.get("findings") is not None:
                    found = [finding_from_json(f) for f in answer["findings"]]
            except HelperFailed as e:  # never let the statistics loop die: say why instead
                stats = failed(f"cannot read task statistics: {e}")
            except (KeyError, TypeError, ValueError) as e:
                stats = failed(f"cannot read task statistics: the helper answered {e!r}")
            # Rows and errors quoting them are anyone's text: made inert once, here.
            self.stats = inert_all(stats)
            for child in self.children.values():
                if child.kind == "tasks":
                    child.tasks = _attribute(self.stats, child.usage)
            if found is not None:
                self._publish(runtime=found)
            await asyncio.sleep(self._stats_every)

    async def _diagnose_setup(self) -> None:
        """The setup checks, once per start, beside the children: in the helper, except the
        ports, which only this process can tell from its own children's."""
        from backends.diagnostics.setup import check_ports

        assert self.helper is not None
        loop = asyncio.get_running_loop()
        entries = [c.entry for c in self.children.values()]
        ports = loop.run_in_executor(None, check_ports, entries)
        await self.started(STARTED_WAIT)
        while True:
            try:
                answer = await self.helper.ask({"op": "setup"}, SETUP_TIMEOUT)
                found = [finding_from_json(f) for f in answer["findings"]]
            except HelperError as e:  # it answered: the checks themselves failed
                found = [_setup_failed(str(e))]
            except HelperFailed as e:  # it died or hung: said, and asked again of the next
                if self.stopping:
                    return
                self._publish(setup=[_setup_failed(str(e))])
                await asyncio.sleep(SETUP_RETRY)
                continue
            except (KeyError, TypeError, ValueError) as e:
                found = [_setup_failed(f"the helper answered {e!r}")]
            break
        self.setup_checked = True
        assert self.project is not None
        self._publish(setup=[*self.project.findings, *await ports, *found])
        if not self._stats_wanted:  # nothing more to ask it: its memory goes back
            await self.helper.close()

    async def started(self, within: float) -> None:
        """Until no child is starting, at most ``within`` seconds. The helper waits for it:
        it loads the whole project, as the children do while they boot, and on a small
        machine it would compete with them; a web server that answers sooner matters more
        than statistics that show sooner (and a server that never answers must not hide the
        findings about it for long)."""
        deadline = time.monotonic() + within
        while (
            time.monotonic() < deadline
            and not self.stopping
            and any(c.state is State.STARTING for c in self.children.values())
        ):
            await asyncio.sleep(0.05)

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """A question for the helper from a client (the task panel): HelperFailed says why not."""
        if self.helper is None:
            raise HelperFailed("no statistics helper: no entry of this project runs tasks")
        return await self.helper.ask(request, ASK_TIMEOUT)

    def _task_workers(self) -> list[Worker]:
        from backends.diagnostics import worker

        up = (State.STARTING, State.RUNNING)
        found = (worker(c.name, c.entry.backend, c.state in up) for c in self.children.values())
        return [w for w in found if w is not None]

    def masked(self, findings: list[Finding]) -> list[Finding]:
        """Findings quote settings and database errors: secrets in them are masked, and
        escapes in them made inert, for every client that shows them."""
        return [
            inert_all(replace(f, what=self.redact(f.what), fix=self.redact(f.fix)))
            for f in findings
        ]

    def _publish(
        self, setup: list[Finding] | None = None, runtime: list[Finding] | None = None
    ) -> None:
        """Tell listeners that have ``on_findings`` when the findings change, not every poll."""
        if setup is not None:
            self._setup_findings = setup
        if runtime is not None:
            self._runtime_findings = runtime
        # A probe's port-in-use, a worker's report of its database: what it met supersedes
        # what the setup checks predicted.
        taken = {f.key for f in [*self._ports_taken.values(), *self._runtime_findings]}
        setup = [f for f in self._setup_findings if f.key not in taken]
        findings = self.masked([*setup, *self._ports_taken.values(), *self._runtime_findings])
        if findings == self.findings:
            return
        self.findings = findings
        for listener in self._listeners:
            hear = getattr(listener, "on_findings", None)
            if hear is not None:
                hear(findings)


def _helper(
    entries: Sequence[Entry],
    project: Project | None,
    watch: dict[str, float] | None,
    stopping: Callable[[], bool],
    guard: Callable[[int, Launch], None],
) -> StatsHelper:
    """The helper loads the settings as the children do (those of the project, else of the
    first task worker); for a real project it also builds the same entries, for the checks."""
    import json

    workers = [e.backend.project for e in entries if e.kind == "tasks" and e.backend]
    where = project or next(iter(workers), None)
    env = where.child_env() if where is not None else {}
    ours = str(Path(__file__).resolve().parents[1])  # it must import this copy of ``tui``
    path = env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ours, path) if p)
    args = []
    if project is not None:
        names = [e.name for e in entries if e.error is None]
        args = ["--watch", json.dumps(watch or {}), "--diagnose", json.dumps(names)]
    cwd = where.base_dir if where is not None else os.getcwd()
    return StatsHelper(args, env, cwd, stopping, guard)


def _around_refusal(line: str) -> str:
    """The words of a refusal in a line of any length: what the runtime check looks for."""
    at = min((i for i in map(line.find, dbslots.REFUSALS) if i >= 0), default=0)
    return line[max(0, at - 200) : at + 300]


def _setup_failed(why: str) -> Finding:
    from backends.diagnostics import Finding

    return Finding(
        "warning",
        "check-failed",
        None,
        f"the setup checks could not run ({why})",
        "run prodserver-tui --check for them",
        topic="setup",
    )


def _attribute(stats: Snapshot, usage: Usage | None) -> WorkerCounts | None:
    from backends.snapshot import WorkerCounts

    if usage is None or stats.error:
        return None
    counts = [stats.by_pid[pid] for pid in usage.pids if pid in stats.by_pid]
    return WorkerCounts(
        running=sum(c.running for c in counts),
        succeeded_1m=sum(c.succeeded_1m for c in counts),
        failed_1m=sum(c.failed_1m for c in counts),
    )
