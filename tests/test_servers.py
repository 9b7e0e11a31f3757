"""uvicorn, granian and waitress: real servers on the test Django project, driven by the supervisor.

Each server starts as django-prodserver would start it (same ARGS, same application), answers
HTTP, and leaves nothing behind when stopped. Configuration mistakes become one line with the
fix; runtime mistakes (a port in use) show the server's own error in the entry's output.
"""

from __future__ import annotations

import signal
import socket
import sys
import tomllib
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import psutil
import pytest
from conftest import fixture_argv
from helpers import command, entry, free_port, get, tree, until, wait_gone
from needs import needs

from backends.base import Backend, ConfigError, Project, require_module
from backends.granian import GranianASGIServer, GranianWSGIServer
from backends.registry import resolve
from backends.uvicorn import UvicornServer, UvicornWSGIServer, own_deadline
from backends.waitress import WaitressServer
from tui.engine.child import Child, State
from tui.engine.supervisor import Supervisor
from tui.project import build_entry

Supervise = Callable[..., Awaitable[Supervisor]]
PRODSERVER = "django_prodserver.backends."
# Short, so a stop that needs SIGKILL fails fast. Within it the servers get their own deadline
# (own_deadline: 4 s): granian kills a worker that hangs on shutdown itself (one signalled twice
# at once can deadlock in granian's signal handler, and the supervisor's killpg plus its
# per-descendant signal does that now and then).
GRACE = 6


def _installed(module: str) -> pytest.MarkDecorator:
    return needs(
        module,
        lambda: None if find_spec(module) else f'not installed: pip install -e ".[{module}]"',
    )


class Server(NamedTuple):
    path: str  # below django-prodserver's prefix
    args: Callable[[int], dict[str, str]]  # ARGS for a loopback port
    processes: int  # in its tree at the default scale


def _host_port(port: int) -> dict[str, str]:
    return {"host": "127.0.0.1", "port": str(port)}


UVICORN = pytest.param(
    Server("uvicorn.UvicornServer", _host_port, 1), id="uvicorn", marks=_installed("uvicorn")
)
GRANIAN = pytest.param(  # "address" is django-prodserver's name; granian forks one worker
    Server(
        "granian.GranianASGIServer", lambda port: {"address": "127.0.0.1", "port": str(port)}, 2
    ),
    id="granian-asgi",
    marks=_installed("granian"),
)
SERVERS = [
    UVICORN,
    pytest.param(
        Server("uvicorn.UvicornWSGIServer", _host_port, 1),
        id="uvicorn-wsgi",
        marks=_installed("uvicorn"),
    ),
    GRANIAN,
    pytest.param(
        Server("granian.GranianWSGIServer", _host_port, 2),
        id="granian-wsgi",
        marks=_installed("granian"),
    ),
    pytest.param(
        Server("waitress.WaitressServer", lambda port: {"listen": f"127.0.0.1:{port}"}, 1),
        id="waitress",
        marks=_installed("waitress"),
    ),
]


@pytest.mark.parametrize("server", SERVERS)
async def test_serves_and_stops_clean(
    djproject: Path, supervise: Supervise, server: Server
) -> None:
    port = free_port()
    web = entry(djproject, "web", PRODSERVER + server.path, server.args(port), GRACE=GRACE)
    assert web.backend is not None
    assert web.backend.url() == f"http://127.0.0.1:{port}"
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: get(f"http://127.0.0.1:{port}/") == "ok", timeout=20, what="HTTP ok")
    await until(lambda: child.state is State.RUNNING, what="ready by its probe")
    pids = tree(child.pid or 0)
    assert len(pids) == server.processes
    assert await sup.stop_all(), "needed SIGKILL: the stop signal did not stop it gracefully"
    assert wait_gone(pids, timeout=2) == []  # the last ones may still be exiting
    assert get(f"http://127.0.0.1:{port}/") is None


@pytest.mark.parametrize("server", [UVICORN, GRANIAN])
async def test_workers_change_by_a_restart(
    djproject: Path, supervise: Supervise, server: Server
) -> None:
    port = free_port()
    web = entry(djproject, "web", PRODSERVER + server.path, server.args(port), GRACE=GRACE)
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: child.state is State.RUNNING, timeout=20, what="running")
    before = tree(child.pid or 0)
    assert await sup.scale("web", "workers", 2) is False  # not live: applied by a restart
    assert child.restarts == 1
    await until(lambda: child.state is State.RUNNING, timeout=20, what="running again")
    assert get(f"http://127.0.0.1:{port}/") == "ok"
    assert wait_gone(before, timeout=2) == []
    assert "--workers=2" in child.entry.launch().argv
    assert len(_workers(child.pid or 0)) == 2
    after = tree(child.pid or 0)
    assert await sup.stop_all()
    assert wait_gone(after, timeout=2) == []


def _workers(pid: int) -> list[psutil.Process]:
    """uvicorn's spawned worker processes, or granian's forked ones (its own command line)."""
    main = psutil.Process(pid)
    children = main.children()
    spawned = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    return spawned or [c for c in children if c.cmdline() == main.cmdline()]


@pytest.mark.parametrize("server", SERVERS)
async def test_port_in_use_is_its_own_error_line(
    djproject: Path, supervise: Supervise, server: Server
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = entry(djproject, "web", PRODSERVER + server.path, server.args(port))
        other = command("other", fixture_argv("chatty", "5"))
        sup = await supervise(web, other)
        child = sup["web"]

        def said() -> bool:
            return any("address already in use" in text.lower() for text in lines(child))

        await until(said, timeout=20, what="the server's own error line")
        await until(lambda: child.last_exit is not None, what="the failed start's exit")
        assert child.last_exit is not None and child.last_exit.code != 0
        await until(lambda: sup["other"].state is State.RUNNING, what="the other entry running")
        other_pid = sup["other"].pid
        # Retried, failed again, waiting for the next try. Not just "restarts >= 1": that is
        # counted before the retry spawns, and a teardown during a spawn leaks the new process.
        await until(lambda: _backoffs(child) >= 2 and child.state is State.BACKOFF, what="retry")
        assert sup["other"].state is State.RUNNING
        assert sup["other"].pid == other_pid  # untouched by its neighbour's failures


def lines(child: Child) -> list[str]:
    return [line.text for line in child.ring.since(0)]


def _backoffs(child: Child) -> int:
    return sum(text.startswith("-- backoff") for text in lines(child))


@_installed("waitress")
async def test_waitress_bad_option_fails_with_its_exit_code(
    djproject: Path, supervise: Supervise
) -> None:
    """``python -m waitress`` would exit 0 here; the launcher keeps waitress-serve's code."""
    web = entry(djproject, "web", PRODSERVER + "waitress.WaitressServer", {"bogus": None})
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: child.last_exit is not None, timeout=10, what="exit")
    assert child.last_exit is not None and child.last_exit.code == 1
    assert "Error: option --bogus not recognized" in lines(child)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "cls"),
    [
        ("uvicorn.UvicornServer", UvicornServer),
        ("uvicorn.UvicornWSGIServer", UvicornWSGIServer),
        ("granian.GranianASGIServer", GranianASGIServer),
        ("granian.GranianWSGIServer", GranianWSGIServer),
        ("waitress.WaitressServer", WaitressServer),
    ],
)
@pytest.mark.parametrize("prefix", [PRODSERVER, PRODSERVER + "servers."], ids=["2.x", "3.x"])
def test_both_spellings_resolve(prefix: str, short: str, cls: type[Backend]) -> None:
    assert resolve("web", prefix + short) is cls


def _extra(name: str) -> str:
    """The extra's requirements as pyproject.toml declares them, quoted for a shell."""
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    return " ".join(f'"{r}"' for r in pyproject["project"]["optional-dependencies"][name])


def test_require_module_names_the_extras_requirements() -> None:
    """Not ``pip install "prodserver-tui[uvicorn]"``: that name is not on PyPI."""
    with pytest.raises(ConfigError) as e:
        require_module("web", "prodserver_tui_no_such_server", "uvicorn")
    assert str(e.value) == (
        f"web: prodserver_tui_no_such_server is not installed; run: pip install {_extra('uvicorn')}"
    )


@pytest.mark.parametrize(
    ("short", "module"),
    [
        ("uvicorn.UvicornServer", "uvicorn"),
        ("uvicorn.UvicornWSGIServer", "uvicorn"),
        ("granian.GranianASGIServer", "granian"),
        ("granian.GranianWSGIServer", "granian"),
        ("waitress.WaitressServer", "waitress"),
    ],
)
def test_missing_server_is_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, short: str, module: str
) -> None:
    """``sys.modules[name] = None`` is Python's own way to make a module unimportable."""
    monkeypatch.setitem(sys.modules, module, None)
    built = build_entry("web", {"BACKEND": PRODSERVER + short}, _project(tmp_path))
    assert built.error == f"web: {module} is not installed; run: pip install {_extra(module)}"


def _project(root: Path, **settings: Any) -> Project:
    settings.setdefault("WSGI_APPLICATION", "mysite.wsgi.application")
    return Project("mysite.settings", str(root), (str(root),), SimpleNamespace(**settings))


def _argv(cls: type[Backend], project: Project, args: object = None) -> list[str]:
    return cls("web", {"ARGS": {} if args is None else args}, project).argv()


@pytest.mark.parametrize("cls", [UvicornServer, GranianASGIServer])
def test_asgi_application_from_settings_or_next_to_wsgi(tmp_path: Path, cls: type[Backend]) -> None:
    explicit = _project(tmp_path, ASGI_APPLICATION="mysite.routing.app")
    assert _argv(cls, explicit)[-1] == "mysite.routing:app"
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "asgi.py").write_text("application = None\n")
    assert _argv(cls, _project(tmp_path))[-1] == "mysite.asgi:application"


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({}, "mysite/asgi.py was not found"),
        ({"WSGI_APPLICATION": None}, "WSGI_APPLICATION is not set either"),
    ],
)
@pytest.mark.parametrize("cls", [UvicornServer, GranianASGIServer])
def test_no_asgi_application_says_how_to_set_it(
    tmp_path: Path, cls: type[Backend], settings: dict[str, Any], why: str
) -> None:
    with pytest.raises(ConfigError) as e:
        _argv(cls, _project(tmp_path, **settings))
    assert str(e.value) == (
        f"web: settings.ASGI_APPLICATION is not set and {why}; "
        'set ASGI_APPLICATION to your ASGI callable, e.g. "mysite.asgi.application"'
    )


def test_wsgi_servers_use_wsgi_application(tmp_path: Path) -> None:
    project = _project(tmp_path)
    uvicorn = _argv(UvicornWSGIServer, project, {"interface": "asgi3"})
    assert uvicorn[3:] == [
        "--interface=wsgi",
        "--timeout-graceful-shutdown=25",
        "--interface=asgi3",
        "--workers=1",
        _WSGI,
    ]
    assert _argv(GranianWSGIServer, project)[-2:] == ["--interface=wsgi", _WSGI]
    assert _argv(WaitressServer, project)[-2:] == ["--threads=4", _WSGI]


_WSGI = "mysite.wsgi:application"


def test_granian_reads_args_as_django_prodserver_does(tmp_path: Path) -> None:
    args = {
        "address": "0.0.0.0",
        "port": "9000",
        "threads": "2",
        "runtime_threads": "3",
        "log-access": "True",
        "websockets": "false",
        "reload": None,
        "ssl_cert": "c.pem",
        "workers": "3",
        "workers_kill_timeout": "9",
    }
    server = GranianASGIServer("web", {"ARGS": args}, _project(tmp_path, ASGI_APPLICATION="a.b"))
    assert server.argv()[3:] == [
        "--workers-kill-timeout=9",  # ARGS override the default own_deadline, in its place
        "--host=0.0.0.0",
        "--port=9000",
        "--blocking-threads=2",
        "--runtime-threads=3",
        "--access-log",
        "--no-ws",
        "--reload",
        "--ssl-certificate=c.pem",
        "--workers=3",
        "--interface=asgi",
        "a:b",
    ]
    assert server.url() == "http://0.0.0.0:9000"
    assert server.scale == {"workers": 3}
    assert server.notes() == [
        "ARGS in django-prodserver's names: address -> --host, threads -> --blocking-threads, "
        "log-access -> --access-log, websockets -> --no-ws, reload -> --reload, "
        "ssl_cert -> --ssl-certificate"
    ]


@pytest.mark.parametrize(
    ("cls", "args", "url"),
    [
        (UvicornServer, {}, "http://127.0.0.1:8000"),
        (UvicornServer, {"host": "::1", "port": "9000"}, "http://[::1]:9000"),
        (UvicornServer, {"uds": "/run/web.sock"}, None),
        (GranianWSGIServer, {}, "http://127.0.0.1:8000"),
        (GranianWSGIServer, {"host": "0.0.0.0", "port": 80}, "http://0.0.0.0:80"),
        (GranianWSGIServer, {"uds": "/run/web.sock"}, None),
        (WaitressServer, {}, "http://0.0.0.0:8080"),
        (WaitressServer, {"host": "127.0.0.1", "port": "9000"}, "http://127.0.0.1:9000"),
        (WaitressServer, {"listen": "*:9000"}, "http://0.0.0.0:9000"),
        (WaitressServer, {"listen": "[::1]:9000 127.0.0.1:9001"}, "http://[::1]:9000"),
        (WaitressServer, {"unix-socket": "/run/web.sock"}, None),
    ],
)
def test_url_from_the_servers_own_args(
    tmp_path: Path, cls: type[Backend], args: dict[str, Any], url: str | None
) -> None:
    assert cls("web", {"ARGS": args}, _project(tmp_path)).url() == url


@pytest.mark.parametrize(("grace", "deadline"), [(30, 25), (10, 8), (3, 2), (1, 1), (120, 115)])
def test_servers_own_deadline_comes_before_grace(grace: float, deadline: int) -> None:
    assert own_deadline(grace) == deadline


def test_own_deadline_follows_the_entrys_grace(tmp_path: Path) -> None:
    server = GranianWSGIServer("web", {"GRACE": 60}, _project(tmp_path))
    assert "--workers-kill-timeout=55" in server.argv()


@pytest.mark.parametrize(
    ("cls", "knob", "default", "grace"),
    [
        (UvicornServer, "workers", 1, 30.0),
        (GranianASGIServer, "workers", 1, 30.0),
        (WaitressServer, "threads", 4, 10.0),
    ],
)
def test_knobs_restart_and_stop_with_sigterm(
    tmp_path: Path, cls: type[Backend], knob: str, default: int, grace: float
) -> None:
    server = cls("web", {"ARGS": {}}, _project(tmp_path, ASGI_APPLICATION="a.b"))
    assert server.main_knob == knob
    assert not server.knob(knob).live
    assert server.scale == {knob: default}
    launch = server.launch()
    assert (launch.stop_signal, launch.grace) == (signal.SIGTERM, grace)
