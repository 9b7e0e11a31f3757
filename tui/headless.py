"""The thinnest client of the supervisor: every child's lines on one stream, honcho-style.

``HH:MM:SS name | line``, a colour per name only on a terminal (colours from children are
dropped too when writing to a file or pipe), and state changes as lines of their own. Meant
for CI, containers and ``| grep``; Ctrl-C, SIGTERM and SIGHUP stop everything gracefully
(SIGHUP not under ``nohup``, which asks for the processes to outlive the session).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

from backends.diagnostics import Finding, diff
from tui.child import Child, State
from tui.output import Line
from tui.supervisor import Supervisor

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)  # ANSI foregrounds, cycled by name
_SEVERITY_COLOURS = {"error": 31, "warning": 33, "info": 36}
_STATE_COLOURS = {State.RUNNING: 32, State.CONFIG_ERROR: 31, State.BACKOFF: 33, State.STOPPING: 33}


class Writer:
    """Writes in a thread, so a reader that stops reading never freezes the event loop.

    A blocked write in the loop would also block signal handling: Ctrl-C and SIGTERM would go
    unanswered while ``| less`` is paused. Past ``high`` pending batches the supervisor stops
    reading the children's pipes (they block, nothing is lost) until the backlog is ``low``.
    """

    def __init__(
        self,
        fd: int,
        on_pressure: Callable[[bool], None],
        on_broken: Callable[[], None],
        high: int = 64,
        low: int = 16,
    ) -> None:
        self.fd = fd
        self.on_pressure = on_pressure
        self.on_broken = on_broken
        self.high, self.low = high, low
        self.pending: deque[bytes] = deque()
        self.paused = False
        self.broken = False
        self.cond = threading.Condition()
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, name="headless-writer", daemon=True).start()

    def write(self, data: bytes) -> None:
        if self.broken:
            return
        with self.cond:
            self.pending.append(data)
            self.cond.notify()
            if len(self.pending) >= self.high and not self.paused:
                self.paused = True
                self.on_pressure(True)

    def drain(self, timeout: float) -> None:
        """At exit: give the reader a moment to take the last lines, never wait for ever."""
        with self.cond:
            self.cond.wait_for(lambda: not self.pending or self.broken, timeout)

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.pending)
                data = self.pending[0]
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError:  # the reader went away (``| head``): stop everything, quietly
                with self.cond:
                    self.broken = True
                    self.cond.notify_all()
                self.loop.call_soon_threadsafe(self.on_broken)
                return
            with self.cond:
                self.pending.popleft()
                self.cond.notify_all()
                if self.paused and len(self.pending) <= self.low:
                    self.paused = False
                    self.loop.call_soon_threadsafe(self.on_pressure, False)


class Printer:
    def __init__(self, names: list[str], writer: Writer, colour: bool) -> None:
        width = max(map(len, names), default=0)
        self.width = width
        self.findings: list[Finding] = []
        self.writer = writer
        self.colour = colour
        self.prefix = {
            name: (
                f"\x1b[{_COLOURS[i % len(_COLOURS)]}m{name:<{width}} |\x1b[0m"
                if colour
                else f"{name:<{width}} |"
            )
            for i, name in enumerate(names)
        }

    def on_lines(self, child: Child, lines: list[Line]) -> None:
        if not lines:
            return
        clock = time.strftime("%H:%M:%S", time.localtime(lines[0].time))
        head = f"{clock} {self.prefix[child.name]} "
        if self.colour:
            sys_head = f"{head}\x1b[{_STATE_COLOURS.get(child.state, 1)}m"
            text = "".join(
                f"{sys_head if line.stream == 'sys' else head}{line.text}\x1b[0m\n"
                for line in lines
            )
        else:
            text = "".join(f"{head}{_SGR.sub('', line.text)}\n" for line in lines)
        self._write(text)

    def on_state(self, child: Child) -> None:
        """State changes arrive as lines of their own (stream "sys"): nothing more to print."""

    def on_findings(self, findings: list[Finding]) -> None:
        """A diagnostic when it appears and when it clears, under its entry's name."""
        appeared, cleared = diff(self.findings, findings)
        self.findings = findings
        clock = time.strftime("%H:%M:%S")
        text = "".join(
            f"{clock} {self._prefix(f.entry)} {self._severity(f.severity)}: "
            f"{f.what} — {f.fix} [{f.code}]\n"
            for f in appeared
        )
        text += "".join(
            f"{clock} {self._prefix(f.entry)} resolved: {f.what} [{f.code}]\n" for f in cleared
        )
        if text:
            self._write(text)

    def _prefix(self, entry: str | None) -> str:
        name = entry or "project"
        return self.prefix.get(name) or f"{name:<{self.width}} |"

    def _severity(self, severity: str) -> str:
        if not self.colour:
            return severity
        return f"\x1b[{_SEVERITY_COLOURS.get(severity, 1)}m{severity}\x1b[0m"

    def _write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8", "replace"))


async def run(supervisor: Supervisor, out: BinaryIO, colour: bool) -> int:
    """Run until a signal; 0 when everything stopped within its grace period, else 1."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():  # second Ctrl-C: no more waiting
            supervisor.kill_all()
        stop.set()

    stops = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # ignored: started by nohup
        stops.append(signal.SIGHUP)
    for sig in stops:
        loop.add_signal_handler(sig, on_signal)
    writer = Writer(out.fileno(), supervisor.pause_output, stop.set)
    supervisor.subscribe(Printer(list(supervisor.children), writer, colour))
    await supervisor.start_all()
    if all(c.state is State.CONFIG_ERROR for c in supervisor.children.values()):
        stop.set()
    await stop.wait()
    clean = await supervisor.stop_all()
    await loop.run_in_executor(None, writer.drain, 2.0)
    if all(c.state is State.CONFIG_ERROR for c in supervisor.children.values()):
        return 1
    return 0 if clean else 1
