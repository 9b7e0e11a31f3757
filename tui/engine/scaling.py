"""Scaling converges: what the user asked for against what the process has, until they match.

Counting signals does not work: CPython runs one handler for several pending signals of one
number, SIGCONT discards a pending SIGTTIN / SIGTTOU, a restart gives the process a new pid
and a pid that was reaped raises. So the console never counts: a reconcile loop compares the
desired value (``backend.scale``, what the user asked for) with the observed one, a few times
a second while they differ, and corrects one step at a time:

- signal knobs (gunicorn's TTIN / TTOU): one signal, then wait until the count moves; a step
  nothing answered (the process was suspended, or it was lost) is sent again, a few times;
- command knobs (Celery's ``pool_grow``): one command for the difference, then its result
  must show within ``COMMAND_TIMEOUT`` (it shows after 2.5-4 s), or the scale is stuck;
- channel knobs (our task worker): the absolute target, repeated until the process reports
  it (repeats are harmless);
- other knobs change by a restart, after which the process runs with the desired value.

Observed values come from the process tree (child processes of the main one, read here
rather than from the 1 s sampler: a sample taken before a step landed would send a second
step), from the process's own report (the channel), else from the command's success. Each
step is pinned to the process it was planned for: nothing is sent to a pid that is no longer
the entry's main process, and a new process is planned afresh. A scale that cannot converge
says why, in a note and in the pane, and nothing it meets raises to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from backends.base import Backend, ConfigError, Knob
from backends.control import ENV as CONTROL_ENV
from backends.control import Client
from tui.engine.output import Sanitiser, inert
from tui.engine.views import KnobView, State

if TYPE_CHECKING:
    from tui.engine.child import Child

EVERY = 0.2  # seconds between two comparisons while a knob differs
STEP_TIMEOUT = 10.0  # a signal step whose effect never showed: sent again
AFTER_RESUME = 1.0  # a step sent around a suspension is known lost this soon after SIGCONT
SIGNAL_TRIES = 3  # unanswered signal steps in a row before the scale is called stuck
COMMAND_TIMEOUT = 10.0  # a command's change must show by then
CHANNEL_TIMEOUT = 15.0  # a channel target must be reported by then


@dataclass
class _Step:
    """A correction sent and not yet seen: what it was sent against, and until when to wait."""

    observed: int | None
    deadline: float
    target: int = 0


@dataclass(frozen=True)
class _Look:
    children: int | None  # the main process's live children, None if it is gone
    suspended: bool


class Scaler:
    """The reconcile loop of one entry: runs while a knob differs, then ends."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.observed: dict[str, int] = {}  # of the process ``self._pid``
        self.why: dict[str, str] = {}
        self._pid: int | None = None
        self._proc: psutil.Process | None = None
        self._steps: dict[str, _Step] = {}
        self._tries: dict[str, int] = {}
        self._pending: set[str] = set()  # knobs asked for and not settled
        self._waiters: list[tuple[str, asyncio.Future[bool]]] = []
        self._running = False
        self._channel: Client | None = None

    # -- what the console calls --------------------------------------------------------------

    def want(self, knob: Knob) -> Awaitable[bool]:
        """Converge ``knob`` to ``backend.scale``; resolves True once the running process has
        it (or nothing runs: the next start has it), False when it cannot converge."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((knob.name, done))
        self._pending.add(knob.name)
        self.why.pop(knob.name, None)
        self._tries.pop(knob.name, None)
        if not self._running:
            self._running = True
            self.child._sup.spawn_task(self._run())
        return done

    def views(self) -> list[KnobView]:
        """Every knob: asked for, configured, observed (while it runs), and any scale's state."""
        backend = self.child.entry.backend
        if backend is None:
            return []
        views = []
        for knob in backend.knobs:
            desired = backend.scale[knob.name]
            observed = self._observed(backend, knob)
            differs = observed is not None and observed != desired
            why = self.why.get(knob.name) if differs else None
            views.append(
                KnobView(
                    name=knob.name,
                    live=knob.live,
                    desired=desired,
                    configured=backend.configured[knob.name],
                    observed=observed,
                    converging=differs and why is None and knob.name in self._pending,
                    why=why,
                )
            )
        return views

    def _observed(self, backend: Backend, knob: Knob) -> int | None:
        """While a scale is under way (or stuck), the loop's latest look; otherwise the
        sampler's count of children, else what the process started with or reported."""

        child = self.child
        if child.state is not State.RUNNING or child.pid is None:
            return None
        mine = child.pid == self._pid
        if mine and (knob.name in self._pending or knob.name in self.why):
            return self.observed.get(knob.name)
        usage = child.usage
        if usage is not None and usage.children and backend.counts_children(knob):
            return usage.children
        if mine and knob.name in self.observed:
            return self.observed[knob.name]
        launch = getattr(child, "_launch", None)  # None: a process the console did not start
        return launch.scale.get(knob.name) if launch else backend.scale[knob.name]

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self._pending:
                await self._turn()
                self._settle()
                if self._pending:
                    await asyncio.sleep(EVERY)
        except Exception as e:  # a bug here must not reach the console: say it, give up
            for name in list(self._pending):
                self._stuck(name, f"scaling failed: {type(e).__name__}: {e}")
        finally:  # cancelled too (the console stops): nobody is left waiting
            self._running = False
            self._pending.clear()
            self._settle()

    def _settle(self) -> None:
        """Those waiting for a knob that settled hear how: True, unless it is stuck."""
        waiting = []
        for name, done in self._waiters:
            if name in self._pending:
                waiting.append((name, done))
            elif not done.done():
                done.set_result(name not in self.why)
        self._waiters = waiting

    async def _turn(self) -> None:

        child, backend = self.child, self.child.entry.backend
        if backend is None:
            self._pending.clear()
            return
        if child._spawning is not None or child.state in (State.STARTING, State.STOPPING):
            return  # a process that is not listening yet, or may be replaced: wait
        if child.state is not State.RUNNING or child.pid is None:
            self._pending.clear()  # nothing runs: the next start is launched with the values
            return
        pid = child.pid
        if pid != self._pid and not self._adopt(backend, pid):
            return
        look = await asyncio.get_running_loop().run_in_executor(None, self._look)
        if child.pid != pid or child.state is not State.RUNNING:
            return  # it changed while we looked: plan again next turn
        knobs = [backend.knob(name) for name in sorted(self._pending)]
        channel = [k for k in knobs if k.by_channel]
        if channel:
            self._by_channel(backend, channel)
        for knob in knobs:
            if knob.by_channel:
                continue
            if backend.counts_children(knob) and look.children is not None:
                self.observed[knob.name] = look.children
            if knob.by_command:
                await self._by_command(backend, knob, pid)
            elif knob.up is not None and knob.down is not None:
                self._by_signal(backend, knob, look)
            else:
                self._done(knob.name)  # restart-based: the process has what it started with

    def _adopt(self, backend: Backend, pid: int) -> bool:
        """A new main process: forget what the old one had, start from what it launched with."""
        try:
            self._proc = psutil.Process(pid)
        except psutil.Error:
            return False
        self._pid = pid
        self._steps.clear()
        self._tries.clear()
        launch = self.child._launch
        path = launch.env.get(CONTROL_ENV)
        if path and (self._channel is None or self._channel.path != path):
            self._channel = Client(path)
        if self._channel is not None:
            self._channel.forget()
        # Channel knobs are unknown until the process answers.
        channel = {k.name for k in backend.knobs if k.by_channel}
        self.observed = {k: v for k, v in launch.scale.items() if k not in channel}
        return True

    def _look(self) -> _Look:
        """Blocking (reads /proc): the main process's live children, and whether it is stopped."""
        proc = self._proc
        if proc is None:
            return _Look(None, False)
        try:
            suspended = proc.status() == psutil.STATUS_STOPPED
            children = [c for c in proc.children() if _alive(c)]
        except psutil.Error:
            return _Look(None, False)
        return _Look(len(children), suspended)

    def _done(self, name: str) -> None:
        self._pending.discard(name)
        self._steps.pop(name, None)
        self._tries.pop(name, None)

    def _stuck(self, name: str, why: str) -> None:
        backend = self.child.entry.backend
        desired = backend.scale[name] if backend else "?"
        observed = self.observed.get(name, "?")
        self.why[name] = why
        self._pending.discard(name)
        self._steps.pop(name, None)
        self.child.note(f"-- scale {name} {observed}→{desired} stuck: {why}")

    # -- one step of each kind ---------------------------------------------------------------

    def _by_signal(self, backend: Backend, knob: Knob, look: _Look) -> None:
        name, desired = knob.name, backend.scale[knob.name]
        observed = self.observed.get(name)
        now = time.monotonic()
        step = self._steps.get(name)
        if step is not None:
            if observed != step.observed:  # it moved: plan the next step from here
                self._steps.pop(name)
                self._tries.pop(name, None)
            elif look.suspended:  # whatever is pending now is discarded by SIGCONT
                step.deadline = max(step.deadline, now + AFTER_RESUME)
                return
            elif now < step.deadline:
                return
            else:  # nothing answered it: lost (a suspension we did not see), or ignored
                self._steps.pop(name)
                tries = self._tries[name] = self._tries.get(name, 0) + 1
                if tries >= SIGNAL_TRIES:
                    sig = knob.up if desired > (observed or 0) else knob.down
                    assert sig is not None
                    self._stuck(name, f"{tries} {sig.name} in a row changed nothing")
                    return
        if observed == desired:
            self._done(name)
            return
        if look.suspended or observed is None:
            return  # a stop signal sent now would be discarded when it is continued
        sig = knob.up if desired > observed else knob.down
        assert sig is not None and self._proc is not None
        if self.child.pid != self._proc.pid:
            return
        with contextlib.suppress(psutil.Error, OSError):  # reaped meanwhile: planned again
            self._proc.send_signal(sig)  # checks it is still the same process, not a reused pid
            self._steps[name] = _Step(observed, now + STEP_TIMEOUT)

    async def _by_command(self, backend: Backend, knob: Knob, pid: int) -> None:
        name, desired = knob.name, backend.scale[knob.name]
        observed = self.observed.get(name)
        step = self._steps.get(name)
        if observed == desired:
            self._done(name)
            return
        if step is not None and observed == step.target:  # reached; asked for more since
            self._steps.pop(name)
            step = None
        if step is not None:
            if time.monotonic() >= step.deadline:
                self._stuck(
                    name,
                    f"{name} is {observed} {COMMAND_TIMEOUT:.0f} s after asking for {step.target}",
                )
            return
        if observed is None:
            return
        try:
            argv = backend.scale_argv(name, observed, desired, pid)
        except ConfigError as e:
            self._stuck(name, str(e))
            return
        why = await self._command(argv)
        if why is not None:
            self._stuck(name, why)
        elif backend.counts_children(knob):
            self._steps[name] = _Step(observed, time.monotonic() + COMMAND_TIMEOUT, desired)
        else:  # nothing to observe: the command's success is the answer
            self.observed[name] = desired

    async def _command(self, argv: list[str]) -> str | None:
        """Run it with the child's environment; its output goes into the child's log. Returns
        why it failed, or None."""
        launch = self.child._launch
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=launch.cwd,
                env={**os.environ, **launch.env},
            )
            output, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return f"the scaling command gave no answer in {COMMAND_TIMEOUT:.0f} s"
        except OSError as e:
            return f"cannot run {argv[0]}: {e.strerror or e}"
        lines = [line for line in Sanitiser().feed(output + b"\n") if line.strip()]
        self.child._sup.emit_lines(self.child, "sys", [f"   {line}" for line in lines])
        if proc.returncode:
            said = f": {inert(lines[-1]).strip()}" if lines else ""  # a title: no colours
            return f"the scaling command failed (exit {proc.returncode}){said}"
        return None

    def _by_channel(self, backend: Backend, knobs: list[Knob]) -> None:
        """Send every channel knob's target (absolute: harmless to repeat), read the counts."""
        if self._channel is None:
            for knob in knobs:
                self._stuck(knob.name, "the process has no control channel")
            return
        self._channel.send({k.name: backend.scale[k.name] for k in knobs})
        reported = self._channel.read()
        now = time.monotonic()
        for knob in knobs:
            name, desired = knob.name, backend.scale[knob.name]
            observed = reported.get(name)
            if observed is not None:
                self.observed[name] = observed
            step = self._steps.get(name)
            if observed == desired:
                self._done(name)
            elif step is None or observed != step.observed:  # started, or moving: wait on
                self._steps[name] = _Step(observed, now + CHANNEL_TIMEOUT)
            elif now >= step.deadline:
                said = f"it reports {observed}" if observed is not None else "no answer"
                self._stuck(name, f"{said} {CHANNEL_TIMEOUT:.0f} s after asking for {desired}")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
