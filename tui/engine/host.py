"""An engine's life in a process: take the project's place, serve the control socket, start
every entry, and stop them all when asked (a client's ``stop_all``, SIGTERM, SIGINT) or when
the foreground console that owns it goes away.

Three hosts use it: the engine process behind a foreground console (``owner``: the console's
end of a socket pair), a detached engine (``prodserver-tui up``, or under systemd), and
``--headless``, which runs the engine in its own process and prints its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator

from tui.engine import place, systemd
from tui.engine.local import LocalEngine
from tui.engine.server import Server
from tui.engine.views import State


class Host:
    def __init__(self, engine: LocalEngine, where: place.Place, detached: bool) -> None:
        self.engine = engine
        self.place = where
        self.stopped = asyncio.Event()  # everything was stopped by a client: leave
        self.server = Server(engine, where, lambda: self.stopped.set(), detached)

    @contextlib.asynccontextmanager
    async def serving(self, listener: place.Listener) -> AsyncIterator[Host]:
        await self.server.start(listener)
        try:
            yield self
        finally:
            await self.server.close()

    async def adopt(self, owner: socket.socket) -> None:
        await self.server.adopt(owner)

    def announce(self) -> None:
        self._announcing = asyncio.get_running_loop().create_task(self.started())

    async def started(self) -> None:
        """Every entry out of ``starting`` (running, in backoff, or broken): the moment
        ``up`` reports and systemd hears READY=1; a slow one is not waited for forever."""
        await self.engine.supervisor.started(STARTED_WAIT)
        systemd.ready()
        systemd.status(p.state for p in self.engine.view().processes)


STARTED_WAIT = 60.0  # s


async def run(
    engine: LocalEngine,
    where: place.Place,
    listener: place.Listener,
    owner: socket.socket | None,
) -> int:
    """The engine process: until everything is stopped. 0 when nothing had to be killed."""
    loop = asyncio.get_running_loop()
    host = Host(engine, where, detached=owner is None)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    async with host.serving(listener):
        if owner is not None:
            await host.adopt(owner)
        await engine.start_all()
        host.announce()
        waits = [loop.create_task(stop.wait()), loop.create_task(host.stopped.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        systemd.stopping()
        clean = await engine.stop_all()
        # The clients see the last states before the socket closes.
        await asyncio.sleep(0.2)
    broken = all(p.state is State.CONFIG_ERROR for p in engine.view().processes)
    return 1 if broken or not clean else 0
