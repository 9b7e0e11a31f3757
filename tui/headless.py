"""The thinnest client of the engine: every child's lines on one stream, honcho-style.

``HH:MM:SS name | line``, a colour per name only on a terminal (colours from children are
dropped too when writing to a file or pipe), and state changes as lines of their own. Meant
for CI, containers and ``| grep``; Ctrl-C, SIGTERM and SIGHUP stop everything gracefully
(SIGHUP not under ``nohup``, which asks for the processes to outlive the session).

A reader that stops reading (``| less`` paused, a terminal nobody reads) never slows the
children: their pipes are read on, lines wait in a bounded backlog (``Outlet``), and past it
the oldest are dropped and a line says how many. Ctrl+Z is refused with a line saying why:
a stopped console would stop reading the children's pipes, and they would block.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from functools import partial
from typing import BinaryIO

from backends.diagnostics import Finding, diff
from tui.engine.api import Engine
from tui.engine.host import Host
from tui.engine.output import Line, uncoloured
from tui.engine.views import State
from tui.outlet import Outlet

_COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)  # ANSI foregrounds, cycled by name
_SEVERITY_COLOURS = {"error": 31, "warning": 33, "info": 36}
REFUSE_SUSPEND = (
    "Ctrl+Z ignored: a stopped console stops reading its processes' output and they block; "
    "Ctrl+C stops everything (run it in tmux or screen to leave it running)"
)
_STATE_COLOURS = {State.RUNNING: 32, State.CONFIG_ERROR: 31, State.BACKOFF: 33, State.STOPPING: 33}


class Printer:
    def __init__(
        self,
        engine: Engine,
        fd: int,
        colour: bool,
        on_broken: Callable[[], object],
        backlog: int = 10_000,
    ) -> None:
        self.engine = engine
        names = engine.names()
        width = max(map(len, names), default=0)
        self.width = width
        self.findings: list[Finding] = []
        self.outlet = Outlet(fd, self._behind, on_broken, max_lines=backlog)
        self.colour = colour
        self.next_seq: dict[str, int] = {}  # per entry: the seq of the line expected next
        self.prefix = {
            name: (
                f"\x1b[{_COLOURS[i % len(_COLOURS)]}m{name:<{width}} |\x1b[0m"
                if colour
                else f"{name:<{width}} |"
            )
            for i, name in enumerate(names)
        }

    def on_lines(self, name: str) -> None:
        ring = self.engine.output(name)
        lines = ring.since(self.next_seq.get(name, ring.first_seq))
        if not lines:
            return
        clock = time.strftime("%H:%M:%S", time.localtime(lines[0].time))
        head = f"{clock} {self.prefix[name]} "
        # One read bigger than the ring (a flood) reaches us trimmed to the ring's newest lines.
        gap = lines[0].seq - self.next_seq.get(name, lines[0].seq)
        self.next_seq[name] = lines[-1].seq + 1
        note = self._skipped(head, gap, "more at once than --ring-lines keeps") if gap > 0 else ""
        if self.colour:
            state = self.engine.view().process(name).state if _has_sys(lines) else None
            sys_head = f"{head}\x1b[{_STATE_COLOURS.get(state, 1) if state else 1}m"
            text = "".join(
                f"{sys_head if line.stream == 'sys' else head}{line.text}\x1b[0m\n"
                for line in lines
            )
        else:
            text = "".join(f"{head}{uncoloured(line.text)}\n" for line in lines)
        self.outlet.write((note + text).encode("utf-8", "replace"), len(lines), max(gap, 0))

    def on_view(self) -> None:
        """State changes arrive as lines of their own (stream "sys"); a diagnostic is printed
        when it appears and when it clears, under its entry's name."""
        findings = list(self.engine.view().findings)
        if findings == self.findings:
            return
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
            self._write(text, len(appeared) + len(cleared))

    def say(self, text: str) -> None:
        """A line of the console's own, about the console itself."""
        self._write(f"{time.strftime('%H:%M:%S')} {self._prefix('prodserver-tui')} {text}\n")

    def _behind(self, lines: int) -> bytes:
        """Where the outlet dropped lines: how many (runs on the outlet's thread)."""
        head = f"{time.strftime('%H:%M:%S')} {self._prefix('prodserver-tui')} "
        return self._skipped(head, lines, "this output was not read fast enough").encode()

    def _skipped(self, head: str, lines: int, why: str) -> str:
        what = f"{lines} lines skipped: {why}"
        return f"{head}\x1b[33m{what}\x1b[0m\n" if self.colour else f"{head}{what}\n"

    def _prefix(self, entry: str | None) -> str:
        name = entry or "project"
        return self.prefix.get(name) or f"{name:<{self.width}} |"

    def _severity(self, severity: str) -> str:
        if not self.colour:
            return severity
        return f"\x1b[{_SEVERITY_COLOURS.get(severity, 1)}m{severity}\x1b[0m"

    def _write(self, text: str, lines: int = 1) -> None:
        self.outlet.write(text.encode("utf-8", "replace"), lines)


def _has_sys(lines: list[Line]) -> bool:
    return any(line.stream == "sys" for line in lines)


async def run(
    engine: Engine,
    out: BinaryIO,
    colour: bool,
    backlog: int = 10_000,
    host: Host | None = None,
) -> int:
    """Run until a signal, or until a client of ``host`` (its control socket) stopped
    everything; 0 when everything stopped within its grace period, else 1.
    At most ``backlog`` lines wait for a slow reader."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():  # second Ctrl-C: no more waiting
            engine.kill_all()
        stop.set()

    stops = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # ignored: started by nohup
        stops.append(signal.SIGHUP)
    for sig in stops:
        loop.add_signal_handler(sig, on_signal)
    # The reader went away (``| head`` ended): stop everything, quietly.
    broken = partial(loop.call_soon_threadsafe, stop.set)
    printer = Printer(engine, out.fileno(), colour, broken, backlog)
    engine.watch(printer)
    if signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN:
        loop.add_signal_handler(signal.SIGTSTP, printer.say, REFUSE_SUSPEND)
    await engine.start_all()
    if _all_broken(engine):
        stop.set()
    if host is not None:
        host.announce()
        host.stopped = stop  # a client's stop_all (``prodserver-tui down``) ends the run too
    await stop.wait()
    clean = await engine.stop_all()
    await loop.run_in_executor(None, printer.outlet.drain, 2.0)
    if _all_broken(engine):
        return 1
    return 0 if clean else 1


def _all_broken(engine: Engine) -> bool:
    return all(p.state is State.CONFIG_ERROR for p in engine.view().processes)
