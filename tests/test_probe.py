"""The readiness probe is not traffic: one cheap request at a time, at the HEALTH path, named by
its user agent, left out of the request counts, and a server that never answers ends up running
but not ready instead of starting for ever."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import fixture_argv
from helpers import command, entry, free_port, until

import tui.engine.child as child_module
from tui.engine.child import Child, State
from tui.engine.probe import USER_AGENT
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
HEALTH = "/probe/here?deep=1"
Other = tuple[int, int]  # a web server that is no entry's: its port and pid
# Its command line is another program's text, quoted in our output and findings.
HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\u202e"
OTHER_SERVER = (
    f"# {HOSTILE}\n"
    "import http.server, sys\n"
    "handler = http.server.SimpleHTTPRequestHandler\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), handler).serve_forever()\n" + "#" * 500
)


class Target:
    """The probed server, run as the entry itself (``fixtures/probe_target.py``): the probe
    trusts only a socket its entry's processes hold. It accepts once ``serve`` is called and
    answers while ``answer`` is set; its output says what it received."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child: Child | None = None

    def argv(self) -> list[str]:
        return fixture_argv("probe_target", str(self.port), str(self.control))

    def serve(self) -> None:
        (self.control / "serve").touch()

    def answer(self) -> None:
        (self.control / "answer").touch()

    def _said(self, prefix: str) -> list[str]:
        assert self.child is not None
        out = (line.text for line in self.child.ring.since(0) if line.stream == "out")
        return [text.removeprefix(prefix) for text in out if text.startswith(prefix)]

    @property
    def requests(self) -> list[str]:
        return self._said("request ")

    @property
    def open(self) -> int:
        counts = self._said("open ")
        return int(counts[-1]) if counts else 0

    @property
    def most(self) -> int:
        return max(map(int, self._said("open ")), default=0)


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return Target(tmp_path)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe timings short enough for a test."""
    monkeypatch.setattr(child_module, "READY_TIMEOUT", 1.5)
    monkeypatch.setattr(child_module, "PROBE_TIMEOUT", 0.3)
    monkeypatch.setattr(child_module, "HEALTH_EVERY", 0.2)


def sys_lines(child: Child) -> list[str]:
    return [line.text for line in child.ring.since(0) if line.stream == "sys"]


async def test_a_slow_start_gets_one_probe_not_a_pile(
    supervise: Supervise, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound but not accepting for 3 s (booting): the first probe waits in the backlog for its
    answer instead of being abandoned and followed by others that would all be served later."""
    monkeypatch.setattr(child_module, "READY_TIMEOUT", 20.0)
    target.answer()
    sup = await supervise(command("web", target.argv(), URL=target.url, HEALTH=HEALTH))
    target.child = sup["web"]
    await until(lambda: target.child and target.child.pid, what="the server started")
    await asyncio.sleep(3.0)  # the slow start itself: nothing to poll for
    target.serve()
    await until(lambda: sup["web"].state is State.RUNNING, timeout=10, what="ready")
    assert sup["web"].healthy is True
    assert len(target.requests) == 1, target.requests
    request = target.requests[0]
    assert request.startswith(f"GET {HEALTH} HTTP/1.0 | ")
    assert f" | User-Agent: {USER_AGENT}" in request


async def test_a_silent_server_gets_one_probe_at_a_time_and_is_not_ready(
    supervise: Supervise, target: Target, quick: None
) -> None:
    target.serve()
    sup = await supervise(command("web", target.argv(), URL=target.url))
    child = target.child = sup["web"]
    await until(lambda: target.open == 1, what="the first probe")
    await until(lambda: child.state is not State.STARTING, timeout=10, what="the ready timeout")
    assert (child.state, child.healthy, child.ready_after) == (State.RUNNING, False, None)
    assert len(target.requests) == 1  # held, not replaced, while it started
    await until(lambda: len(target.requests) >= 5, timeout=10, what="more probes")
    assert target.most == 1  # an unanswered probe is abandoned before the next one
    assert child.state is State.RUNNING and child.healthy is False
    target.answer()  # it comes to life late: ready then
    await until(lambda: child.healthy is True, timeout=10, what="ready late")
    assert child.ready_after is not None
    assert any(t.startswith("-- ready in ") for t in sys_lines(child))
    assert target.most == 1


async def test_health_false_means_no_probe(supervise: Supervise, target: Target) -> None:
    target.serve()
    target.answer()
    sup = await supervise(command("web", target.argv(), URL=target.url, HEALTH=False))
    target.child = sup["web"]
    await until(lambda: sup["web"].state is State.RUNNING, what="running by its timer")
    await asyncio.sleep(0.5)  # long enough for a probe that should not exist
    assert target.requests == [] and target.most == 0
    assert sup["web"].healthy is None


async def test_another_programs_answer_does_not_make_the_entry_ready(
    djproject: Path, supervise: Supervise, other_server: Other
) -> None:
    """A server that is not the entry's (a second console's, a crashed run's orphan) holds the
    port, so the entry's gunicorn cannot bind and exits after its retries: the probe's answers
    come from that other server, and the entry must never look ready. Its output and its
    port-in-use finding name the holder, whose socket it is."""
    port, pid = other_server
    args = {"bind": f"127.0.0.1:{port}", "workers": "1"}
    web = entry(djproject, "web", "django_prodserver.backends.gunicorn.GunicornServer", args)
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: child.last_exit is not None, timeout=20, what="the failed start")
    said = sys_lines(child)
    assert child.ready_after is None and not child.healthy
    assert not [t for t in said if "ready in" in t or t.startswith("-- running")], said
    assert any(f"pid {pid}" in t and t.startswith("-- not ready: ") for t in said), said
    [taken] = [f for f in sup.findings if f.key == ("port-in-use", "web", "")]
    assert f"port {port} is already in use by " in taken.what
    assert f"(pid {pid}: " in taken.what
    quoted = [taken.what, *(t for t in said if t.startswith("-- not ready: "))]
    assert all(t.isprintable() and len(t) < 400 and "\\x1b]52;c;" in t for t in quoted), quoted


@pytest.fixture
def other_server() -> Iterator[Other]:
    """A web server that is no entry's: its port and pid."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", OTHER_SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _accepts(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield port, server.pid
    finally:
        server.kill()
        server.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


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
        return [line.text for line in child.ring.since(0) if '"GET /probe/here' in line.text]

    await until(lambda: len(probes()) >= 4, timeout=30, what="several probes in the access log")
    assert child.state is State.RUNNING and child.healthy and child.ready_after is not None
    if backend.endswith("GunicornServer"):  # the only default format with the user agent
        assert all(f'"{USER_AGENT}"' in text for text in probes())
    assert child.events is not None
    assert child.events.by_kind() == {}
    assert child.events.per_second(over=60) == 0


async def test_gunicorn_has_nothing_to_say_about_the_probe(
    djproject: Path, supervise: Supervise, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn warned "WSGI app sent body bytes on a no-body response (method=HEAD ...)" for
    each HEAD probe a Django view answered: a line in the user's log every 10 s. The probe's
    requests are still in the access log (found by their user agent, whatever the method) and
    still left out of the counts."""
    monkeypatch.setattr(child_module, "HEALTH_EVERY", 0.2)
    args = {"bind": f"127.0.0.1:{free_port()}", "workers": "1", "access-logfile": "-"}
    web = entry(djproject, "web", "django_prodserver.backends.gunicorn.GunicornServer", args)
    sup = await supervise(web)
    child = sup["web"]

    def said() -> list[str]:
        return [line.text for line in child.ring.since(0) if line.stream != "sys"]

    def probes() -> list[str]:
        return [text for text in said() if f'"{USER_AGENT}"' in text]

    await until(lambda: len(probes()) >= 4, timeout=30, what="several probes in the access log")
    complaints = [t for t in said() if "no-body" in t or "[WARNING]" in t or "[ERROR]" in t]
    assert complaints == []
    assert child.events is not None and child.events.by_kind() == {}


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
        return [line.text for line in child.ring.since(0) if '"GET / HTTP/1.0"' in line.text]

    await until(lambda: len(probes()) >= 3, timeout=30, what="several probes in the access log")
    assert not [text for text in probes() if '" 400 ' in text], probes()


async def test_the_pane_shows_not_answering_and_waits_for_nothing_without_a_probe(
    other_server: Other, quick: None
) -> None:
    """Silent: "not answering". Unprobed: nothing waited for. Answered by another program's
    socket: not ready, and the title says whose port it is."""
    from tui.app import ConsoleApp
    from tui.engine.local import LocalEngine

    port = free_port()
    off = f"http://127.0.0.1:{free_port()}"
    sup = Supervisor(
        [
            command(
                "silent", fixture_argv("silent_port", str(port)), URL=f"http://127.0.0.1:{port}"
            ),
            command("unprobed", SLEEPER, URL=off, HEALTH=False),
            command("held", SLEEPER, URL=f"http://127.0.0.1:{other_server[0]}"),
        ],
        watchdog=False,
    )
    app = ConsoleApp(LocalEngine(sup, "test.settings"), host="testhost")
    try:
        async with app.run_test(size=(160, 48)):
            await until(
                lambda: (
                    sup["silent"].healthy is False
                    and sup["unprobed"].state is State.RUNNING
                    and sup["held"].healthy is False
                ),
                timeout=10,
                what="not ready, running by its timer, and not ready",
            )
            titles = {pane.child.name: str(pane.title_text()) for pane in app.panes}
    finally:
        sup.kill_all()
        await sup.stop_all()
    assert "● running" in titles["silent"] and "not answering" in titles["silent"]
    assert "● running" in titles["unprobed"] and "waiting for HTTP" not in titles["unprobed"]
    assert "ready in" not in titles["held"], titles["held"]
    assert "port held by pid " in titles["held"], titles["held"]
