"""The engine: the asyncio lifecycle of every child process. Knows nothing of any UI.

The console, the headless mode and the tests all drive this one object. Each child runs in
its own session and process group so signals reach its whole tree; output is read in chunks
through a protocol (no line-length limits) into a bounded ring per child; an unexpected exit
is retried with backoff; stopping escalates from the backend's signal to SIGKILL after its
grace period, and reaches descendants that left the group. A watchdog process kills every
recorded descendant if this process dies without stopping them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from backends.base import ConfigError, Knob, Launch, positive_int
from tui.events import EventCounter
from tui.output import Line, Ring, Sanitiser
from tui.probe import answers, probe_address
from tui.project import Entry
from tui.sampler import Sampler, Usage

if TYPE_CHECKING:
    from backends.taskstats import Snapshot, WorkerCounts

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
BACKOFF_RESET_AFTER = 60.0  # up this long: the next crash starts the backoff from scratch
RUNNING_AFTER = 1.0  # alive this long after start: "running" rather than "starting"
READY_TIMEOUT = 60.0  # a web server silent this long after start is reported as not ready
HEALTH_EVERY = 10.0  # once ready, a web server is asked again this often
SIGNAL_SPACING = 0.05  # between two scaling signals, so the receiver sees each one
PIPE_DRAIN = 2.0  # after the main process exits, wait this long at most for its pipes to close


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"  # stopped on request; stays down until started
    EXITED = "exited"  # ended by itself with an exit code
    KILLED = "killed"  # ended by a signal
    BACKOFF = "backoff"  # waiting to restart after an unexpected exit
    CONFIG_ERROR = "config-error"


class Listener(Protocol):
    def on_lines(self, child: Child, lines: list[Line]) -> None: ...
    def on_state(self, child: Child) -> None: ...


@dataclass(frozen=True)
class Exit:
    code: int | None
    signal: int | None
    forced: bool  # had to be SIGKILLed after its grace period


class Child:
    """One entry's process across restarts: state, counters and its output ring."""

    def __init__(self, entry: Entry, supervisor: Supervisor, ring: Ring) -> None:
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
        self.ready_after: float | None = None  # web servers: seconds from start to first answer
        self.healthy: bool | None = None  # web servers: did the last request get an answer
        pattern = entry.backend.events_pattern() if entry.backend else None
        self.events = EventCounter(pattern) if pattern else None  # requests, finished tasks
        ready = entry.backend.ready_pattern if entry.backend else None
        self._ready_line = re.compile(ready) if ready else None
        self._sup = supervisor
        self._transport: asyncio.SubprocessTransport | None = None
        self._exited: asyncio.Future[None] | None = None
        self._wanted = False  # the user wants it up: an exit is unexpected and retried
        self._backoff = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._forced = False
        self._spawning: asyncio.Future[None] | None = None
        self._signalling = asyncio.Lock()
        if entry.error:
            self.state = State.CONFIG_ERROR

    @property
    def detail(self) -> str:
        """What the state is waiting for, in words (for panes and headless lines)."""
        now = time.time()
        if self.state is State.CONFIG_ERROR:
            return self.error or ""
        if self.state is State.BACKOFF and self.next_try_at is not None and self.last_exit:
            left = max(0.0, self.next_try_at - now)
            return f"{describe_exit(self.last_exit)}, restarting in {left:.0f} s"
        if self.state is State.STOPPING and self.stop_deadline is not None:
            left = max(0.0, self.stop_deadline - time.monotonic())
            if self.tasks and self.tasks.running:
                return f"draining {self.tasks.running} tasks, {left:.0f} s left"
            return f"waiting for exit, {left:.0f} s before SIGKILL"
        if self.state in (State.STARTING, State.RUNNING) and self.pid is not None:
            return f"pid {self.pid}"
        if self.state is State.STOPPED and self.last_exit:
            return describe_exit(self.last_exit)
        return ""

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

    def sup_stats(self) -> Snapshot | None:
        """The latest task statistics of the whole project (queues are shared by entries)."""
        return self._sup.stats

    def note(self, text: str) -> None:
        """A line of the console's own about this process, kept in its output like the rest."""
        self._sup.emit_lines(self, "sys", [text])

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.state in (State.STARTING, State.RUNNING, State.STOPPING):
            return
        self._cancel_timer()
        self._wanted = True
        try:
            launch = self.entry.launch()
        except ConfigError as e:
            self._wanted = False
            self.error = str(e)
            self._set(State.CONFIG_ERROR)
            return
        await self._spawn(launch)

    async def _spawn(self, launch: Launch) -> None:
        loop = asyncio.get_running_loop()
        for text in launch.notes:
            self.note(text)
        self._launch = launch
        self._forced = False
        self._exited = loop.create_future()
        self._spawning = loop.create_future()
        try:
            await loop.subprocess_exec(
                lambda: _Pipes(self),
                *launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
                start_new_session=True,
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
        self.ready_after = self.healthy = None
        self._set(State.STARTING)
        url = self.entry.backend.web_url() if self.entry.backend else None
        address = probe_address(url) if url else None
        if self._ready_line is not None:
            pass  # running once it says so (``saw``)
        elif address is None:
            self._timer = asyncio.get_running_loop().call_later(RUNNING_AFTER, self._mark_running)
        else:  # a web server is running once it answers HTTP, not after a guess
            self._sup.spawn_task(self._watch_health(self.pid, url or "", address))
        if self._sup.output_paused:
            self.pause_output(True)

    def pause_output(self, paused: bool) -> None:
        """Stop (or resume) reading this child's pipes: it blocks on write, nothing is lost."""
        if self._transport is None:
            return
        for fd in (1, 2):
            pipe = self._transport.get_pipe_transport(fd)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                if paused:
                    pipe.pause_reading()
                else:
                    pipe.resume_reading()

    async def _watch_health(self, pid: int, url: str, address: tuple[str, int]) -> None:
        """Knock until it answers (backing off while it starts), then now and then."""
        started = time.monotonic()
        delay = 0.1
        warned = False
        while self.pid == pid:
            ok = await answers(*address)
            if self.pid != pid:
                return
            if ok and self.ready_after is None:
                self.ready_after = time.monotonic() - started
                self.healthy = True
                self.note(f"-- ready in {self.ready_after:.1f} s at {url}")
                if self.state is State.STARTING:
                    self._set(State.RUNNING)
            elif ok != self.healthy and self.ready_after is not None:
                self.healthy = ok
                self.note(f"-- {'answering again' if ok else 'not answering'} at {url}")
                self._sup.emit_state(self)
            elif not ok and not warned and time.monotonic() - started > READY_TIMEOUT:
                warned = True
                self.healthy = False
                self.note(f"-- not ready: nothing answers at {url} after {READY_TIMEOUT:.0f} s")
                self._sup.emit_state(self)
            delay = HEALTH_EVERY if self.ready_after is not None else min(delay * 1.5, 1.0)
            await asyncio.sleep(delay)

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
        self.restarts += 1
        await self.start()

    def scale(self, knob_name: str, value: object) -> Awaitable[bool]:
        """Set a knob; it sticks across restarts. Resolves True when applied live, False when
        applied by a restart.

        The new value is recorded at once (two quick "+" make two steps, not one); applying
        it is the awaitable: live knobs get one signal per step, sent to the main process
        only once it is running (a TTIN before a server installs its handlers would stop it),
        spaced so that no two coalesce.
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
        return self._apply_scale(knob, before, wanted)

    async def _apply_scale(self, knob: Knob, before: int, wanted: int) -> bool:
        if wanted == before or self.state not in (State.STARTING, State.RUNNING):
            return True  # nothing to do now, or it applies at the next start
        if not knob.live:
            await self.restart()
            return False
        if self.state is State.STARTING:
            await self._sup.wait_for(lambda: self.state is not State.STARTING)
        async with self._signalling:  # two quick scales must not run together
            if knob.by_command:
                return await self._scale_by_command(knob, before, wanted)
            sig = knob.up if wanted > before else knob.down
            for _ in range(abs(wanted - before)):
                if self.pid is None:
                    break
                os.kill(self.pid, sig)  # type: ignore[arg-type]
                await asyncio.sleep(SIGNAL_SPACING)
        return True

    async def _scale_by_command(self, knob: Knob, before: int, wanted: int) -> bool:
        """Run the backend's scaling command; its output goes into this process's log."""
        backend = self.entry.backend
        if backend is None or self.pid is None:
            return False
        argv = backend.scale_argv(knob.name, before, wanted, self.pid)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._launch.cwd,
            env={**os.environ, **self._launch.env},
        )
        output, _ = await proc.communicate()
        lines = Sanitiser().feed(output + b"\n")
        self._sup.emit_lines(self, "sys", [f"   {line}" for line in lines if line.strip()])
        if proc.returncode:
            self.note(f"-- scale {knob.name} failed (exit {proc.returncode})")
        return proc.returncode == 0

    def _time_left(self) -> float:
        return max(0.0, (self.stop_deadline or 0.0) - time.monotonic())

    def _signal_tree(self, sig: int) -> None:
        """Signal the group, and each descendant that left it (setsid'd grandchildren)."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, sig)
        for proc in self._sup.sampler.descendants(pid):
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
        # A descendant we never saw may still hold a pipe: do not wait for it for ever.
        transport = self._transport
        if transport is not None:
            asyncio.get_running_loop().call_later(PIPE_DRAIN, transport.close)

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
        uptime = time.time() - self.started_at if self.started_at else 0.0
        self.pid = None
        self.usage = None
        self.tasks = None
        self.healthy = None
        self.stop_deadline = None
        self.last_exit = exit_
        if not self._wanted:
            self._set(State.STOPPED)
            return
        self._backoff = (
            BACKOFF_FIRST
            if uptime >= BACKOFF_RESET_AFTER or not self._backoff
            else min(self._backoff * 2, BACKOFF_CAP)
        )
        self.next_try_at = time.time() + self._backoff
        self._set(State.BACKOFF)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._backoff, self._retry)

    def _retry(self) -> None:
        self._timer = None
        self.next_try_at = None
        self.restarts += 1
        self._sup.spawn_task(self._retry_start())

    async def _retry_start(self) -> None:
        if not self._wanted:  # stopped while the retry was on its way
            return
        self.state = State.STOPPED  # let start() proceed from backoff
        await self.start()

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


class Supervisor:
    """Starts, stops, restarts and samples every entry; listeners hear lines and states."""

    def __init__(
        self,
        entries: Sequence[Entry],
        ring_lines: int = 10_000,
        watchdog: bool = True,
        sample_every: float = 1.0,
        stats_every: float = 1.5,
    ) -> None:
        self.children = {e.name: Child(e, self, Ring(max_lines=ring_lines)) for e in entries}
        self.sampler = Sampler()
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._use_watchdog = watchdog
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._sample_every = sample_every
        self._sampling: asyncio.Task[None] | None = None
        self.stats: Snapshot | None = None  # task statistics, when an entry is a task worker
        self._stats_every = stats_every
        self._stats_wanted = stats_every > 0 and any(e.kind == "tasks" for e in entries)
        self._stats: asyncio.Task[None] | None = None
        self.output_paused = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    # -- control ---------------------------------------------------------------------------

    async def start_all(self) -> None:
        if self._use_watchdog and self._watchdog is None:
            self._watchdog = start_watchdog()
        loop = asyncio.get_running_loop()
        if self._sampling is None:
            self._sampling = loop.create_task(self._sample_forever())
        if self._stats_wanted and self._stats is None:
            self._stats = loop.create_task(self._stats_forever())
        for child in self.children.values():
            if child.state is State.CONFIG_ERROR:
                child._set(State.CONFIG_ERROR)
            else:
                await child.start()

    async def start(self, name: str) -> None:
        await self.children[name].start()

    async def stop(self, name: str) -> None:
        await self.children[name].stop()

    async def restart(self, name: str) -> None:
        await self.children[name].restart()

    def scale(self, name: str, knob: str, value: object) -> Awaitable[bool]:
        return self.children[name].scale(knob, value)

    async def wait_for(self, condition: Callable[[], bool], every: float = 0.05) -> None:
        while not condition():
            await asyncio.sleep(every)

    async def stop_all(self) -> bool:
        """Stop everyone at once; True when none had to be killed."""
        await asyncio.gather(*(c.stop() for c in self.children.values()))
        for task in (self._sampling, self._stats):
            if task is not None:
                task.cancel()
        self._sampling = self._stats = None
        for task in list(self._tasks):
            task.cancel()
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # type: ignore[union-attr]
            self._watchdog.wait()
            self._watchdog = None
        return not any(c.last_exit and c.last_exit.forced for c in self.children.values())

    def pause_output(self, paused: bool) -> None:
        """Backpressure from a slow reader of our own output (``--headless | less``)."""
        self.output_paused = paused
        for child in self.children.values():
            child.pause_output(paused)

    def kill_all(self) -> None:
        for child in self.children.values():
            child.kill()

    # -- plumbing for children -------------------------------------------------------------

    def watch(self, pid: int, launch: Launch) -> None:
        """Tell the watchdog about a new child, so it stops with us whatever happens."""
        if self._watchdog is None or self._watchdog.stdin is None:
            return
        with contextlib.suppress(psutil.Error, OSError):
            ctime = psutil.Process(pid).create_time()
            line = f"{pid} {ctime!r} {int(launch.stop_signal)} {launch.grace}\n"
            self._watchdog.stdin.write(line.encode())
            self._watchdog.stdin.flush()

    def emit_lines(self, child: Child, stream: str, lines: list[str]) -> None:
        first = child.ring.next_seq
        child.ring.append(stream, lines)
        if self._listeners or child.events is not None or child.waits_for_line:
            kept = child.ring.since(first)
            if stream != "sys":
                child.saw(kept)
            for listener in self._listeners:
                listener.on_lines(child, kept)

    def emit_state(self, child: Child) -> None:
        for listener in self._listeners:
            listener.on_state(child)

    def spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sample_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            roots = {c.name: c.pid for c in self.children.values() if c.pid is not None}
            usage = await loop.run_in_executor(None, self.sampler.sample, roots)
            for child in self.children.values():
                child.usage = usage.get(child.name) if child.pid is not None else None
            await asyncio.sleep(self._sample_every)

    async def _stats_forever(self) -> None:
        """Task statistics from the database, off the loop; attributed to entries by pid."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.stats = await loop.run_in_executor(None, poll_task_stats)
            except Exception as e:  # never let the statistics loop die: say why instead
                self.stats = _failed_stats(f"cannot read task statistics: {e}")
            for child in self.children.values():
                if child.kind == "tasks":
                    child.tasks = _attribute(self.stats, child.usage)
            await asyncio.sleep(self._stats_every)


def poll_task_stats() -> Snapshot:
    """Runs in a worker thread: Django is set up on first use, connections closed after."""
    import django
    from django.db import connections

    from backends import taskstats

    try:
        django.setup()
        return taskstats.poll()
    except Exception as e:  # the project's apps failed to load: say so, keep the console up
        return _failed_stats(f"cannot read task statistics: {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(Exception):
            connections.close_all()


def _failed_stats(error: str) -> Snapshot:
    from backends.taskstats import Snapshot

    return Snapshot(
        taken_at=datetime.now(UTC),
        queues=[],
        failures=[],
        by_pid={},
        oldest_ready_wait=None,
        error=error,
    )


def _attribute(stats: Snapshot, usage: Usage | None) -> WorkerCounts | None:
    from backends.taskstats import WorkerCounts

    if usage is None or stats.error:
        return None
    counts = [stats.by_pid[pid] for pid in usage.pids if pid in stats.by_pid]
    return WorkerCounts(
        running=sum(c.running for c in counts),
        succeeded_1m=sum(c.succeeded_1m for c in counts),
        failed_1m=sum(c.failed_1m for c in counts),
    )


def start_watchdog() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": _our_path()},
    )


def _our_path() -> str:
    """The watchdog must import ``tui`` from wherever this copy of it lives."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
