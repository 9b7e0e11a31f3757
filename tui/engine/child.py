"""One entry's process across restarts: start, stop, backoff, scale, readiness, output.

Each child runs in its own session and process group so signals reach its whole tree;
output is read in chunks through a protocol (no line-length limits) into a bounded ring; an
unexpected exit is retried with backoff; stopping escalates from the backend's signal to
SIGKILL after its grace period, and reaches descendants that left the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

import psutil

from backends.backoff import Backoff
from backends.base import ConfigError, Launch, one_line, plural, positive_int
from backends.ports import describe, held_by, holder
from tui.engine.deathsig import guarded
from tui.engine.events import EventCounter
from tui.engine.output import Line, Ring, Sanitiser
from tui.engine.probe import answers, probe_address, request_line
from tui.engine.sampler import tree_pids
from tui.engine.scaling import Scaler
from tui.engine.views import Events, Exit, ProcessView, State, Usage
from tui.engine.wakeups import WakeUps
from tui.project import Entry

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    from backends.taskstats import WorkerCounts
    from tui.engine.sampler import Sampler
    from tui.redact import Redactor


class Parent(Protocol):
    """What a child needs of the supervisor that owns it, and nothing more: the supervisor
    hears its lines and states, guards its processes, and runs its background tasks."""

    redact: Redactor
    sampler: Sampler
    stopping: bool  # stopping everything: no start may spawn a process any more

    def emit_lines(self, child: Child, stream: str, lines: list[str]) -> None: ...
    def emit_state(self, child: Child) -> None: ...
    def port_taken(self, child: Child, port: int, holder: str) -> None: ...
    def spawn_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...
    def watch(self, pid: int, launch: Launch) -> None: ...


BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
BACKOFF_RESET_AFTER = 60.0  # up this long: the next crash starts the backoff from scratch
RUNNING_AFTER = 1.0  # alive this long after start: "running" rather than "starting"
READY_TIMEOUT = 60.0  # a web server silent this long after start is running but not ready
HEALTH_EVERY = 10.0  # once ready, a web server is asked again this often
PROBE_TIMEOUT = 5.0  # once past its start, an answer later than this is no answer
PIPE_IDLE = 2.0  # after the main process exits, pipes quiet this long are closed unread to EOF
PIPE_DRAIN = 30.0  # and pipes still talking this long after it (a grandchild we missed) too


class Child:
    """One entry's process across restarts: state, counters and its output ring."""

    def __init__(self, entry: Entry, supervisor: Parent, ring: Ring) -> None:
        self.entry = entry
        self.name = entry.name
        self.kind = entry.kind
        self.ring = ring
        self.state = State.STOPPED
        self.error: str | None = entry.error
        self.pid: int | None = None
        self.started_at: float | None = None  # time.time() of the current run
        self.restarts = 0
        self.last_exit: Exit | None = None
        self.next_try_at: float | None = None  # time.time() of the next restart, in backoff
        self.stop_deadline: float | None = None  # time.monotonic() when SIGKILL follows
        self.usage: Usage | None = None
        self.tasks: WorkerCounts | None = None  # task workers: what its tree is running now
        self.wake_ups = WakeUps()  # task workers: how each of its processes hears of tasks
        self.ready_after: float | None = None  # web servers: seconds from start to first answer
        self.healthy: bool | None = None  # web servers: did the last request get an answer
        # web servers: who answered in its place, while its own processes do not hold the port
        self.answered_by: str | None = None
        backend = entry.backend
        pattern = backend.events_pattern() if backend else None
        probe = request_line(backend.health) if backend and backend.health else None
        # requests (the probe's own left out), finished tasks
        self.events = EventCounter(pattern, ignore=probe) if pattern else None
        ready = entry.backend.ready_pattern if entry.backend else None
        self._ready_line = re.compile(ready) if ready else None
        self._sup = supervisor
        self._transport: asyncio.SubprocessTransport | None = None
        self._exited: asyncio.Future[None] | None = None
        self._wanted = False  # the user wants it up: an exit is unexpected and retried
        self._backoff = Backoff(BACKOFF_FIRST, BACKOFF_CAP)
        self._timer: asyncio.TimerHandle | None = None
        self._health: asyncio.Task[None] | None = None
        self._forced = False
        self._spawning: asyncio.Future[None] | None = None
        self._received = 0  # bytes read from its pipes, in all: tells quiet pipes from busy ones
        self.scaler = Scaler(self)
        if entry.error:
            self.state = State.CONFIG_ERROR

    @property
    def detail(self) -> str:
        """What the state is waiting for, in words (for panes and headless lines)."""
        now = time.time()
        if self.state is State.CONFIG_ERROR:
            return self._sup.redact(self.error or "")
        if self.state is State.BACKOFF and self.next_try_at is not None and self.last_exit:
            left = max(0.0, self.next_try_at - now)
            return f"{describe_exit(self.last_exit)}, restarting in {left:.0f} s"
        if self.state is State.STOPPING and self.stop_deadline is not None:
            left = max(0.0, self.stop_deadline - time.monotonic())
            if self.tasks and self.tasks.running:
                return f"draining {plural(self.tasks.running, 'task')}, {left:.0f} s left"
            return f"waiting for exit, {left:.0f} s before SIGKILL"
        if self.state in (State.STARTING, State.RUNNING) and self.pid is not None:
            silent = ", not answering HTTP" if self.healthy is False else ""
            taken = f", port held by {self.answered_by}" if self.answered_by else ""
            return f"pid {self.pid}{silent}{taken}"
        if self.state is State.STOPPED and self.last_exit:
            return describe_exit(self.last_exit)
        return ""

    def view(self, now: float) -> ProcessView:
        """What clients see of it, at ``now`` (``time.time()``)."""
        backend = self.entry.backend
        left = None if self.stop_deadline is None else self.stop_deadline - time.monotonic()
        options = backend.options if backend else {}
        queues = str(options.get("queue") or options.get("queue_name") or "default")
        events = self.events
        return ProcessView(
            name=self.name,
            kind=self.kind,
            state=self.state,
            detail=self.detail,
            pid=self.pid,
            started_at=self.started_at,
            restarts=self.restarts,
            last_exit=self.last_exit,
            next_try_at=self.next_try_at,
            stop_at=None if left is None else now + left,
            usage=self.usage,
            tasks=self.tasks,
            url=self.shown_url,
            probed=bool(backend and backend.health),
            ready_after=self.ready_after,
            healthy=self.healthy,
            answered_by=self.answered_by,
            knobs=tuple(self.scaler.views()),
            main_knob=backend.main_knob if backend else None,
            queues=tuple(queues.split(",")) if self.kind == "tasks" else (),
            events=None
            if events is None
            else Events(events.per_second(now=now), events.by_kind(now=now)),
            wake_up=self.wake_ups.views(self.usage.pids if self.usage else frozenset()),
        )

    @property
    def shown_url(self) -> str | None:
        """Where it answers HTTP, for panes: a declared URL may hold credentials."""
        url = self.entry.backend.web_url() if self.entry.backend else None
        return self._sup.redact(url) if url else None

    @property
    def waits_for_line(self) -> bool:
        return self._ready_line is not None and self.state is State.STARTING

    def saw(self, lines: list[Line]) -> None:
        """Lines from the process itself: count its events, notice it saying it is ready."""
        if self.events is not None:
            self.events.count(lines)
        ready = self._ready_line
        if ready and self.state is State.STARTING and any(ready.search(ln.text) for ln in lines):
            self.ready_after = time.time() - (self.started_at or time.time())
            self.note(f"-- ready in {self.ready_after:.1f} s")
            self._set(State.RUNNING)

    def note(self, text: str, masked: bool = False) -> None:
        """A line of the console's own about this process, kept in its output like the rest.
        It quotes settings (the command line), which may hold newlines or escapes: shown
        escaped, as the child's output is, it stays one line and inert on the terminal.
        Secrets are masked here unless the caller did (a command line, masked word by word:
        masking its shell-quoted text again would mangle the quotes)."""
        shown = text if masked else self._sup.redact(text)
        self._sup.emit_lines(self, "sys", [one_line(shown, 16384)])

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, restart: bool = False) -> None:
        """Start it unless it is up; ``restart`` counts the start as one, if it happens."""
        if self._spawning is not None:  # a start under way (two restarts, a retry) is this one
            await asyncio.shield(self._spawning)
            return
        if self.state in (State.STARTING, State.RUNNING, State.STOPPING):
            return
        self._cancel_timer()
        self._wanted = True
        try:
            self.entry.prepare()
            launch = self.entry.launch()
        except ConfigError as e:
            self._wanted = False
            self.error = str(e)
            self._set(State.CONFIG_ERROR)
            return
        await self._spawn(launch, restart)

    async def _spawn(self, launch: Launch, restart: bool) -> None:
        """Every start passes here: once the console is stopping, nothing spawns."""
        if self._sup.stopping:
            self._wanted = False
            self.note("-- not started: the console is stopping")
            self._sup.emit_state(self)  # a retry set STOPPED quietly: listeners hear it now
            return
        if restart:
            self.restarts += 1
        loop = asyncio.get_running_loop()
        self.note(f"-- command: {self._sup.redact.command(launch.argv)}", masked=True)
        for text in launch.notes:
            self.note(text)
        self._launch = launch
        self._forced = False
        self._exited = loop.create_future()
        self._spawning = loop.create_future()
        try:
            await loop.subprocess_exec(
                lambda: _Pipes(self),
                *guarded(launch.argv, launch.stop_group, launch.stop_signal),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
                start_new_session=True,
                umask=-1 if launch.umask is None else launch.umask,
            )
        except OSError as e:
            self.note(f"cannot start {launch.argv[0]}: {e.strerror or e}")
            self._exited = None
            self._on_exit(Exit(code=127, signal=None, forced=False))
        finally:
            self._spawning.set_result(None)
            self._spawning = None

    def _started(self, transport: asyncio.SubprocessTransport) -> None:
        """Called before the first byte of output is delivered, so the state line comes first."""
        self._transport = transport
        self.pid = transport.get_pid()
        self.started_at = time.time()
        self._sup.watch(self.pid, self._launch)
        self.ready_after = self.healthy = self.answered_by = None
        self._set(State.STARTING)
        backend = self.entry.backend
        url = backend.web_url() if backend else None
        health = backend.health if backend else None  # None: HEALTH turned the probe off
        address = probe_address(url) if url and health else None
        if self._ready_line is not None:
            pass  # running once it says so (``saw``)
        elif url is None or health is None or address is None:
            self._timer = asyncio.get_running_loop().call_later(RUNNING_AFTER, self._mark_running)
        else:  # a web server is running once it answers HTTP, not after a guess
            self._health = self._sup.spawn_task(self._watch_health(self.pid, url, address, health))

    async def _watch_health(self, pid: int, url: str, address: tuple[str, int], path: str) -> None:
        """Knock until it answers, then now and then; never two requests at once.

        While it starts, a refused connection is retried soon (no request reached the server),
        but one the server's socket accepted is waited on, up to READY_TIMEOUT: a server still
        booting answers it when it can, instead of finding a pile of abandoned probes queued
        for it. Silent that long, it is running but not ready (``healthy`` False), and asked
        again every HEALTH_EVERY until it answers.

        Only its own answer makes it ready: the socket that answered must be one its process
        tree listens on (``_ours``), not another program's on the same port (a second console
        on the project, a crashed run's orphans), which would otherwise make a server that
        cannot bind look ready. Once ready, the socket stays its own for the run.
        """
        started = time.monotonic()
        delay = 0.1
        backend = self.entry.backend
        host = backend.probe_host() if backend else None
        while self.pid == pid:
            starting = self.state is State.STARTING
            left = READY_TIMEOUT - (time.monotonic() - started)
            if starting and left <= 0:
                self.healthy = False
                nothing = f"nothing of {self.name}'s" if self.answered_by else "nothing"
                self.note(f"-- not ready: {nothing} answers at {url} after {READY_TIMEOUT:.0f} s")
                self._set(State.RUNNING)
                ok = False
            else:
                peer = await answers(*address, path, left if starting else PROBE_TIMEOUT, host)
                ok = peer is not None and (
                    self.ready_after is not None or await self._ours(pid, peer)
                )
            if self.pid != pid:
                return
            if ok and self.ready_after is None:
                self.ready_after = time.monotonic() - started
                self.healthy = True
                self.answered_by = None
                self.note(f"-- ready in {self.ready_after:.1f} s at {url}")
                if self.state is State.STARTING:
                    self._set(State.RUNNING)
                else:
                    self._sup.emit_state(self)
            elif ok != self.healthy and self.ready_after is not None:
                self.healthy = ok
                self.note(f"-- {'answering again' if ok else 'not answering'} at {url}")
                self._sup.emit_state(self)
            delay = min(delay * 1.5, 1.0) if self.state is State.STARTING else HEALTH_EVERY
            await asyncio.sleep(delay)

    async def _ours(self, pid: int, peer: tuple[str, int]) -> bool:
        """Whether the socket that answered at ``peer`` is one this run's tree listens on.
        If not, who holds it is looked up once per run (it lists every process's sockets),
        said in the output and as the entry's port-in-use finding; it stays not ready."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, held_by, tree_pids(pid), *peer):
            return self.pid == pid
        if self.pid != pid or self.answered_by is not None:
            return False
        holder = await loop.run_in_executor(None, _holder, peer)
        if self.pid != pid:
            return False
        held, described = holder
        self.answered_by = f"pid {held}" if held is not None else "another user's program"
        self.note(
            f"-- not ready: {peer[0]}:{peer[1]} is answered by {described}, "
            f"not by {self.name}'s processes"
        )
        self._sup.port_taken(self, peer[1], described)
        return False

    def _mark_running(self) -> None:
        self._timer = None
        if self.state is State.STARTING:
            self._set(State.RUNNING)

    async def stop(self) -> None:
        """Backend's signal to the group, its grace period, then SIGKILL to everyone left."""
        self._wanted = False
        self._cancel_timer()
        if self._spawning is not None:  # a start is under way: let it finish, then stop it
            await asyncio.shield(self._spawning)
        if self._transport is None or self._exited is None:
            if self.state is State.BACKOFF:
                self._set(State.STOPPED)
            return
        exited = self._exited
        if self.state is not State.STOPPING:
            launch = self._launch
            self.stop_deadline = time.monotonic() + launch.grace
            self._set(State.STOPPING)
            if launch.stop_group:
                self._signal_tree(launch.stop_signal)
            elif self.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, launch.stop_signal)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self._time_left())
        except TimeoutError:
            self.kill()
            await exited

    def kill(self) -> None:
        """No more waiting: SIGKILL the whole tree now."""
        if self._transport is not None:
            self._forced = True
            self._signal_tree(signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start(restart=True)

    def scale(self, knob_name: str, value: object) -> Awaitable[bool]:
        """Set a knob; it sticks across restarts. Resolves True once the running process has
        it live (or nothing runs now: the next start has it), False when it took a restart or
        cannot converge (a note and the pane say why). Never raises once recorded.

        The new value is recorded at once as the target (two quick "+" make a target two
        higher, not two signals); the reconcile loop (``tui.engine.scaling``) moves the running
        process there one observed step at a time.
        """
        backend = self.entry.backend
        if backend is None:
            raise ConfigError(self.error or f"{self.name}: not runnable")
        knob = backend.knob(knob_name)
        wanted = positive_int(self.name, knob_name, value)
        before = backend.scale[knob_name]
        backend.scale[knob_name] = wanted
        if wanted != before:
            self.note(f"-- scale {knob_name}: {before} -> {wanted}")
        if not knob.live:
            return self._restart_to_scale(changed=wanted != before)
        return self.scaler.want(knob)

    async def _restart_to_scale(self, changed: bool) -> bool:
        if not changed or self.state not in (State.STARTING, State.RUNNING):
            return True  # nothing to do now, or it applies at the next start
        await self.restart()
        return False

    def _time_left(self) -> float:
        return max(0.0, (self.stop_deadline or 0.0) - time.monotonic())

    def _signal_tree(self, sig: int) -> None:
        """Signal the group, and each descendant that left it (setsid'd grandchildren)."""
        pid = self.pid
        if pid is None:
            return
        # Looked up before the group is signalled: a parent that dies of it re-parents its
        # children away, and one the sampler had not seen yet would then be missed for good.
        descendants = self._sup.sampler.descendants(pid)
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)
        for proc in descendants:
            # Only those outside the group: a second copy of the signal made granian's
            # workers deadlock in their own handler.
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.pid) != pid:
                    proc.send_signal(sig)

    # -- exit ------------------------------------------------------------------------------

    def _main_exited(self) -> None:
        """The main process is gone: whatever it left behind (workers, grandchildren) goes too.

        Their exit also closes the pipes they inherited, so the last output can be read and the
        exit is reported after it (in ``_finished``), never before.
        """
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        for proc in self._sup.sampler.forget(pid):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        transport = self._transport
        if transport is not None:
            deadline = time.monotonic() + PIPE_DRAIN
            loop = asyncio.get_running_loop()
            loop.call_later(PIPE_IDLE, self._close_when_quiet, transport, self._received, deadline)

    def _close_when_quiet(
        self, transport: asyncio.SubprocessTransport, seen: int, deadline: float
    ) -> None:
        """A descendant we never saw may still hold a pipe open: do not wait for EOF for ever.
        But what the exited process wrote is read to its end, however late the reading is
        (its last lines and its fatal error are the ones that matter): the pipes are closed
        only once quiet for PIPE_IDLE, or PIPE_DRAIN after the exit if they never fall quiet."""
        if transport is not self._transport:  # drained to EOF: _finished is done with it
            return
        if self._received == seen or time.monotonic() >= deadline:
            transport.close()
            return
        loop = asyncio.get_running_loop()
        loop.call_later(PIPE_IDLE, self._close_when_quiet, transport, self._received, deadline)

    def _finished(self, code: int) -> None:
        """Process exited and both pipes are drained."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        exit_ = Exit(
            code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            forced=self._forced,
        )
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)
        self._exited = None
        self._on_exit(exit_)

    def _on_exit(self, exit_: Exit) -> None:
        self._cancel_timer()
        if self._health is not None:  # its probe would knock on the next run's server
            self._health.cancel()
            self._health = None
        uptime = time.time() - self.started_at if self.started_at else 0.0
        self.pid = None
        self.usage = None
        self.tasks = None
        self.wake_ups.forget()
        self.healthy = self.answered_by = None
        self.stop_deadline = None
        self.last_exit = exit_
        if not self._wanted:
            self._set(State.STOPPED)
            return
        if uptime >= BACKOFF_RESET_AFTER:
            self._backoff.reset()
        delay = self._backoff.next()
        self.next_try_at = time.time() + delay
        self._set(State.BACKOFF)
        self._timer = asyncio.get_running_loop().call_later(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        self.next_try_at = None
        self._sup.spawn_task(self._retry_start())

    async def _retry_start(self) -> None:
        # Stopped while the retry was on its way, or started by hand meanwhile.
        if not self._wanted or self.state is not State.BACKOFF:
            return
        self.state = State.STOPPED  # let start() proceed from backoff
        await self.start(restart=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.next_try_at = None

    def _set(self, state: State) -> None:
        """Every change of state is also a line in the output, so the history stays readable."""
        self.state = state
        detail = self.detail
        self.note(f"-- {state}: {detail}" if detail else f"-- {state}")
        self._sup.emit_state(self)


def _holder(peer: tuple[str, int]) -> tuple[int | None, str]:
    pid = holder(*peer)
    return pid, describe(pid)


def describe_exit(exit_: Exit) -> str:
    if exit_.signal is not None:
        name = signal.Signals(exit_.signal).name if exit_.signal in _SIGNALS else exit_.signal
        how = f"killed by {name}"
    else:
        how = f"exited with code {exit_.code}"
    return how + (" after its grace period" if exit_.forced else "")


_SIGNALS = {s.value for s in signal.Signals}


class _Pipes(asyncio.SubprocessProtocol):
    """Chunks from stdout and stderr, kept apart, sanitised into lines."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.sanitisers = {1: Sanitiser(), 2: Sanitiser()}
        self.streams = {1: "out", 2: "err"}
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.child._started(self.transport)  # type: ignore[arg-type]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.child._received += len(data)
        lines = self.sanitisers[fd].feed(data)
        if lines:
            self.child._sup.emit_lines(self.child, self.streams[fd], lines)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self.sanitisers:
            lines = self.sanitisers[fd].flush()
            if lines:
                self.child._sup.emit_lines(self.child, self.streams[fd], lines)

    def process_exited(self) -> None:
        self.child._main_exited()

    def connection_lost(self, exc: Exception | None) -> None:
        assert self.transport is not None
        self.child._finished(self.transport.get_returncode() or 0)
