"""The readiness probe is not traffic: one cheap request at a time, at the HEALTH path, named by
its user agent, left out of the request counts, and a server that never answers ends up running
but not ready instead of starting for ever."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from helpers import command, entry, free_port, until

import tui.child as child_module
from tui.child import Child, State
from tui.probe import USER_AGENT
from tui.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
HEALTH = "/probe/here?deep=1"


class Listener:
    """A real listening socket standing in for a server's: it counts the connections made to it
    (open now, most open at once) and keeps each request; it accepts only once ``serve`` is
    called (until then connections wait in its backlog, as with a server still booting), and
    answers only when ``answer`` is set."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.answer = False
        self.open = self.most = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most = max(self.most, self.open)
        self._writers.add(writer)
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.answer:
                writer.write(b"HTTP/1.0 204 No Content\r\n\r\n")
                await writer.drain()
            else:
                await reader.read()  # silent until the prober hangs up
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.sock.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    made = Listener()
    yield made
    await made.close()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe timings short enough for a test."""
    monkeypatch.setattr(child_module, "READY_TIMEOUT", 1.5)
    monkeypatch.setattr(child_module, "PROBE_TIMEOUT", 0.3)
    monkeypatch.setattr(child_module, "HEALTH_EVERY", 0.2)


def sys_lines(child: Child) -> list[str]:
    return [line.text for line in child.ring.since(0) if line.stream == "sys"]


async def test_a_slow_start_gets_one_probe_not_a_pile(
    supervise: Supervise, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound but not accepting for 3 s (booting): the first probe waits in the backlog for its
    answer instead of being abandoned and followed by others that would all be served later."""
    monkeypatch.setattr(child_module, "READY_TIMEOUT", 20.0)
    listener.answer = True
    sup = await supervise(command("web", SLEEPER, URL=listener.url, HEALTH=HEALTH))
    await asyncio.sleep(3.0)  # the slow start itself: nothing to poll for
    await listener.serve()
    await until(lambda: sup["web"].state is State.RUNNING, timeout=10, what="ready")
    assert sup["web"].healthy is True
    assert len(listener.requests) == 1, listener.requests
    request = listener.requests[0].decode()
    assert request.startswith(f"HEAD {HEALTH} HTTP/1.0\r\n")
    assert f"\r\nUser-Agent: {USER_AGENT}\r\n" in request


async def test_a_silent_server_gets_one_probe_at_a_time_and_is_not_ready(
    supervise: Supervise, listener: Listener, quick: None
) -> None:
    await listener.serve()
    sup = await supervise(command("web", SLEEPER, URL=listener.url))
    child = sup["web"]
    await until(lambda: listener.open == 1, what="the first probe")
    await until(lambda: child.state is not State.STARTING, timeout=10, what="the ready timeout")
    assert (child.state, child.healthy, child.ready_after) == (State.RUNNING, False, None)
    assert len(listener.requests) == 1  # held, not replaced, while it started
    await until(lambda: len(listener.requests) >= 5, timeout=10, what="more probes")
    assert listener.most == 1  # an unanswered probe is abandoned before the next one
    assert child.state is State.RUNNING and child.healthy is False
    listener.answer = True  # it comes to life late: ready then
    await until(lambda: child.healthy is True, timeout=10, what="ready late")
    assert child.ready_after is not None
    assert any(t.startswith("-- ready in ") for t in sys_lines(child))
    assert listener.most == 1


async def test_health_false_means_no_probe(supervise: Supervise, listener: Listener) -> None:
    await listener.serve()
    sup = await supervise(command("web", SLEEPER, URL=listener.url, HEALTH=False))
    await until(lambda: sup["web"].state is State.RUNNING, what="running by its timer")
    await asyncio.sleep(0.5)  # long enough for a probe that should not exist
    assert listener.requests == [] and listener.most == 0
    assert sup["web"].healthy is None


SERVERS = [
    pytest.param(
        "django_prodserver.backends.gunicorn.GunicornServer",
        lambda port: {"bind": f"127.0.0.1:{port}", "workers": "1", "access-logfile": "-"},
        id="gunicorn",
    ),
    pytest.param(
        "django_prodserver.backends.uvicorn.UvicornServer",
        lambda port: {"host": "127.0.0.1", "port": str(port)},
        id="uvicorn",
    ),
    pytest.param(
        "django_prodserver.backends.granian.GranianWSGIServer",
        lambda port: {"address": "127.0.0.1", "port": str(port), "log-access": "1"},
        id="granian",
    ),
    pytest.param(
        "backends.runserver.RunServer",
        lambda port: {"addrport": f"127.0.0.1:{port}", "noreload": None},
        id="runserver",
    ),
]


@pytest.mark.parametrize(("backend", "args"), SERVERS)
async def test_an_idle_server_counts_no_requests_from_the_probe(
    djproject: Path,
    supervise: Supervise,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    args: Callable[[int], dict[str, object]],
) -> None:
    """The probe's requests are in the server's own access log, at the HEALTH path, and the
    pane counts none of them."""
    monkeypatch.setattr(child_module, "HEALTH_EVERY", 0.2)
    port = free_port()
    web = entry(djproject, "web", backend, args(port), HEALTH=HEALTH, GRACE=6)
    sup = await supervise(web)
    child = sup["web"]

    def probes() -> list[str]:
        return [line.text for line in child.ring.since(0) if '"HEAD /probe/here' in line.text]

    await until(lambda: len(probes()) >= 4, timeout=30, what="several probes in the access log")
    assert child.state is State.RUNNING and child.healthy
    if backend.endswith("GunicornServer"):  # the only default format with the user agent
        assert all(f'"{USER_AGENT}"' in text for text in probes())
    assert child.events is not None
    assert child.events.by_kind() == {}
    assert child.events.per_second(over=60) == 0


async def test_the_probe_names_a_host_the_site_allows(
    djproject: Path, supervise: Supervise, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A site that allows only its own domain answers a probe naming 127.0.0.1 with 400 and logs
    DisallowedHost at ERROR (mailed to ADMINS by default LOGGING) on every probe: the probe
    names the first host ALLOWED_HOSTS gives instead."""
    monkeypatch.setenv("DJPROJECT_ALLOWED_HOSTS", ".example.com,www.example.org")
    monkeypatch.setattr(child_module, "HEALTH_EVERY", 0.2)
    port = free_port()
    args = {"bind": f"127.0.0.1:{port}", "workers": "1", "access-logfile": "-"}
    web = entry(djproject, "web", "django_prodserver.backends.gunicorn.GunicornServer", args)
    sup = await supervise(web)
    child = sup["web"]

    def probes() -> list[str]:
        return [line.text for line in child.ring.since(0) if '"HEAD / HTTP/1.0"' in line.text]

    await until(lambda: len(probes()) >= 3, timeout=30, what="several probes in the access log")
    assert not [text for text in probes() if '" 400 ' in text], probes()


async def test_the_pane_shows_not_answering_and_waits_for_nothing_without_a_probe(
    listener: Listener, quick: None
) -> None:
    from tui.app import ConsoleApp

    await listener.serve()
    off = f"http://127.0.0.1:{free_port()}"
    sup = Supervisor(
        [
            command("silent", SLEEPER, URL=listener.url),
            command("unprobed", SLEEPER, URL=off, HEALTH=False),
        ],
        watchdog=False,
    )
    app = ConsoleApp(sup, "test.settings", host="testhost")
    try:
        async with app.run_test(size=(160, 48)):
            await until(
                lambda: sup["silent"].healthy is False and sup["unprobed"].state is State.RUNNING,
                timeout=10,
                what="not ready, and running by its timer",
            )
            titles = {pane.child.name: str(pane.title_text()) for pane in app.panes}
    finally:
        sup.kill_all()
        await sup.stop_all()
    assert "● running" in titles["silent"] and "not answering" in titles["silent"]
    assert "● running" in titles["unprobed"] and "waiting for HTTP" not in titles["unprobed"]
