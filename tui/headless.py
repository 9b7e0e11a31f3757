"""The thinnest client of the supervisor: every child's lines on one stream, honcho-style.

``HH:MM:SS name | line``, a colour per name only on a terminal (colours from children are
dropped too when writing to a file or pipe), and state changes as lines of their own. Meant
for CI, containers and ``| grep``; Ctrl-C, SIGTERM and SIGHUP stop everything gracefully.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from typing import BinaryIO

from tui.output import Line
from tui.supervisor import Child, State, Supervisor

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)  # ANSI foregrounds, cycled by name
_STATE_COLOURS = {State.RUNNING: 32, State.CONFIG_ERROR: 31, State.BACKOFF: 33, State.STOPPING: 33}


class Printer:
    def __init__(
        self, names: list[str], out: BinaryIO, colour: bool, on_broken: Callable[[], None]
    ) -> None:
        width = max(map(len, names), default=0)
        self.out = out
        self.colour = colour
        self.on_broken = on_broken
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

    def _write(self, text: str) -> None:
        try:
            self.out.write(text.encode("utf-8", "replace"))
            self.out.flush()
        except OSError:  # the reader went away (``| head``): stop everything, quietly
            self.on_broken()


async def run(supervisor: Supervisor, out: BinaryIO, colour: bool) -> int:
    """Run until a signal; 0 when everything stopped within its grace period, else 1."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():  # second Ctrl-C: no more waiting
            supervisor.kill_all()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    supervisor.subscribe(Printer(list(supervisor.children), out, colour, stop.set))
    await supervisor.start_all()
    if all(c.state is State.CONFIG_ERROR for c in supervisor.children.values()):
        stop.set()
        await supervisor.stop_all()
        return 1
    await stop.wait()
    return 0 if await supervisor.stop_all() else 1
