"""The console's end of the watchdog: start it, tell it about every child, and replace it.

Nothing here blocks the event loop: registrations go through an asyncio pipe transport
(buffered, written when the pipe takes them), so a stalled watchdog cannot stall the console.
The same transport hears the pipe's far end close when the watchdog dies; the console then
says so in every pane and starts a new one that is told about every live child.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Set

from backends.backoff import Backoff
from backends.base import Launch
from backends.procid import started

CLOSE_WAIT = 10.0  # after the pipe closes, a watchdog still there this long is killed
HEALTHY_AFTER = 10.0  # a watchdog that died sooner is replaced after a backoff, not at once


class Watchdog:
    """One watchdog process at a time, told about each child and each descendant seen."""

    def __init__(
        self,
        live: Callable[[], list[tuple[int, Launch]]],
        say: Callable[[str], None],
    ) -> None:
        self._live = live  # every running child's pid and launch, to tell a new watchdog
        self._say = say  # a line in every pane
        self.proc: subprocess.Popen[bytes] | None = None
        self._pipe: asyncio.WriteTransport | None = None
        self._sent: dict[int, set[int]] = {}  # root pid -> descendants told about
        self._born = 0.0
        self._closing = False
        self._respawns = Backoff(1.0, 30.0)
        self._replacing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        proc = start_watchdog()
        loop = asyncio.get_running_loop()
        pipe, _ = await loop.connect_write_pipe(lambda: _Pipe(self, proc), proc.stdin)
        self.proc, self._pipe, self._sent = proc, pipe, {}
        self._born = time.monotonic()
        for pid, launch in self._live():
            self.register(pid, launch)

    def register(self, pid: int, launch: Launch) -> None:
        """A new child: the watchdog stops it with us whatever happens."""
        ticks = started(pid)
        if ticks is not None:
            how = f"{int(launch.stop_signal)} {launch.grace} {int(launch.stop_group)}"
            self._write(f"{pid} {ticks} {how}\n")

    def descendants(self, trees: Mapping[int, Set[int]]) -> None:
        """Each live child's tree as the sampler sees it; only what is new is written."""
        self._sent = {root: self._sent.get(root, set()) for root in trees}
        for root, pids in trees.items():
            sent = self._sent[root]
            for pid in pids - sent - {root}:
                ticks = started(pid)
                if ticks is not None:
                    self._write(f"+ {root} {pid} {ticks}\n")
                sent.add(pid)

    def _write(self, line: str) -> None:
        if self._pipe is not None and not self._pipe.is_closing():
            self._pipe.write(line.encode())

    async def close(self) -> None:
        """End of the pipe: the watchdog stops what is left (nothing, after a stop) and exits."""
        self._closing = True
        if self._replacing is not None:
            self._replacing.cancel()
        if self._pipe is not None:
            self._pipe.close()  # flushes what is buffered first
        if self.proc is not None:
            await _reap(self.proc, CLOSE_WAIT)

    def _lost(self, proc: subprocess.Popen[bytes]) -> None:
        """The pipe's far end closed: the watchdog died (we did not close it)."""
        if self._closing or proc is not self.proc:
            return
        self._pipe = None
        self._replacing = asyncio.get_running_loop().create_task(self._replace(proc))

    async def _replace(self, dead: subprocess.Popen[bytes]) -> None:
        code = await _reap(dead, CLOSE_WAIT)
        how = f"killed by {_signame(-code)}" if code < 0 else f"exited with code {code}"
        if time.monotonic() - self._born > HEALTHY_AFTER:
            self._respawns.reset()
        else:
            delay = self._respawns.next()
            self._say(f"-- the watchdog (pid {dead.pid}) {how}; a new one starts in {delay:.0f} s")
            await asyncio.sleep(delay)
        try:
            await self.start()
        except OSError as e:
            self._say(f"-- the watchdog (pid {dead.pid}) {how}; a new one cannot start: {e}")
            return
        new = self.proc.pid if self.proc else "?"
        self._say(f"-- the watchdog (pid {dead.pid}) {how}; a new one (pid {new}) guards again")


class _Pipe(asyncio.Protocol):
    def __init__(self, owner: Watchdog, proc: subprocess.Popen[bytes]) -> None:
        self.owner = owner
        self.proc = proc

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self.proc)


async def _reap(proc: subprocess.Popen[bytes], within: float) -> int:
    """Wait for it without blocking the loop (it is not an asyncio child); kill it if late."""
    deadline = time.monotonic() + within
    while (code := proc.poll()) is None:
        if time.monotonic() > deadline:
            proc.kill()
            return proc.wait()
        await asyncio.sleep(0.05)
    return code


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def start_watchdog() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "tui.engine.watchdog"],
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
