"""Clients of an engine in another process: the foreground console, ``up``, ``attach`` and the
control commands (``status``, ``logs``, ``start``/``stop``/``restart``, ``scale``, ``down``).

All of them find the engine by the project (``tui.engine.place``) and talk to it only through
``tui.remote.RemoteEngine``. With no engine running, each says so in one line and how to
start one, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backends.base import one_line
from tui import envfile
from tui.engine import place
from tui.engine.api import ActionError
from tui.engine.views import EngineView, ProcessView, State
from tui.format import duration, size, wake_up
from tui.outlet import Outlet
from tui.project import ProjectError, settings_from_manage_py
from tui.remote import RemoteEngine

SCREEN_WAIT = 5.0  # s: the screen loads once no process is starting, or after this long
UP_WAIT = 60.0  # s: ``up`` reports once no entry is starting, or after this long
# -P: the engine runs this copy of prodserver-tui, never a ``tui`` package in the project's
# folder (``-m`` would put the current folder first on its path).
ENGINE = [sys.executable, "-P", "-m", "tui.cli", "engine"]


class Refused(Exception):
    """One line for the user; exit 1."""


def main(command: str, args: argparse.Namespace) -> int:
    try:
        code = asyncio.run(_client(command, args))
        sys.stdout.flush()  # here, where a reader that left can be told from other errors
        return code
    except (Refused, place.PlaceError, ProjectError, ActionError) as e:
        print(f"prodserver-tui: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `status | head` ends quietly, as any command's output would. Not by SIGPIPE's
        # default action: a write to an engine that has just closed the socket (it refused
        # us, it stopped) would then kill this process without a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing at exit
        return 1


async def _client(command: str, args: argparse.Namespace) -> int:
    sock = place.connect(where(args))
    engine = await RemoteEngine.over(sock, read_only=getattr(args, "read_only", False))
    try:
        if command == "attach":
            return await attach(engine)
        if command == "status":
            return status(engine.view(), engine.info, args.json)
        if command == "logs":
            return await logs(engine, args.names, args.n, args.follow)
        if command in ("start", "stop", "restart"):
            await engine.call(command, names=args.names)
            done = {"start": "started", "stop": "stopped", "restart": "restarted"}[command]
            print(f"{done}: {', '.join(args.names)}")
            return 0
        if command == "scale":
            return await scale(engine, args.name, args.knobs)
        assert command == "down"
        return await down(engine)
    finally:
        await engine.close()


# -- finding the engine ------------------------------------------------------------------------


def where(args: argparse.Namespace) -> place.Place:
    """The project's engine, found as the engine found its place: the project folder and the
    settings module (from --settings, the .env files, the environment or manage.py), without
    importing the settings. Outside a project, the one engine this user runs, if only one."""
    from tui import demo

    if args.demo:
        return locate(args, demo.SETTINGS_MODULE)
    envfile.load(args.env_file, Path.cwd(), enabled=not args.no_env_file)
    module = args.settings or os.environ.get("DJANGO_SETTINGS_MODULE")
    manage = Path.cwd() / "manage.py"
    if not module and manage.is_file():
        module = settings_from_manage_py(manage)
    if module:
        return locate(args, module)
    if args.socket or os.environ.get(place.ENV_SOCKET):
        return locate(args, "")
    running = _running_engines()
    if len(running) == 1:
        return running[0]
    if running:
        names = ", ".join(p.socket.stem for p in running)
        raise Refused(f"{len(running)} engines run ({names}): run this in a project's folder")
    raise Refused(
        "no engine is running for this user, and no Django project here: start one with "
        "`prodserver-tui up` in the project's folder (or pass --settings)"
    )


def locate(args: argparse.Namespace, settings_module: str) -> place.Place:
    """The engine's place: from the project folder and the settings module, unless
    ``--socket`` or the environment names one. The demo's folder is its data folder, the same
    from any current folder and for any copy of the code (a checkout, an installed wheel)."""
    if args.demo:
        from tui.demo.settings import DATA_DIR

        return place.place_for(DATA_DIR, settings_module, args.socket)
    return place.place_for(Path.cwd(), settings_module, args.socket)


def _running_engines() -> list[place.Place]:
    folder = place.place_for(Path("/"), "").socket.parent
    found = []
    for sock in sorted(folder.glob("*.sock")) if folder.is_dir() else []:
        candidate = place.Place(Path("?"), sock, folder, sock.stem)
        try:
            place.connect(candidate, timeout=1.0).close()
        except place.PlaceError:
            continue
        found.append(candidate)
    return found


# -- the consoles ------------------------------------------------------------------------------


def foreground(argv: list[str]) -> int:
    """``prodserver-tui [run] [NAME...]``: an engine of its own, in its own process, and the
    console on it. The engine's first connection is this console's end of a socket pair: if
    this process dies (SIGKILL, the terminal closed) the engine stops everything gracefully,
    unless the user detached first. Being another process, a console that stalls (a terminal
    that does not read, Ctrl+Z) can never stall the engine or its children."""
    ours, theirs = socket.socketpair()
    args = argv[1:] if argv and argv[0] == "run" else argv
    proc = subprocess.Popen(
        [*ENGINE, "--owner-fd", str(theirs.fileno()), *args],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # the terminal's signals are the console's to handle
    )
    theirs.close()
    try:
        return asyncio.run(_foreground(ours, proc))
    except KeyboardInterrupt:  # before the screen: the engine hears us go and stops them
        return 130


async def _foreground(sock: socket.socket, proc: subprocess.Popen[bytes]) -> int:
    loop = asyncio.get_running_loop()
    try:
        engine = await RemoteEngine.over(sock)
    except ActionError:  # it said why on the terminal (bad settings): its code is ours
        return await loop.run_in_executor(None, proc.wait)
    refuse = signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN
    pressed: list[bool] = []  # Ctrl+Z before the screen: refused, and said once it is up
    if refuse:
        loop.add_signal_handler(signal.SIGTSTP, pressed.append, True)
    await engine.subscribe()
    outlet = Outlet(sys.stdout.fileno(), lambda _: b"")  # a terminal that does not read
    outlet.write(f"prodserver-tui: starting {', '.join(engine.names())}…\n".encode())
    outlet.drain(0.2)
    deadline = time.monotonic() + SCREEN_WAIT
    while time.monotonic() < deadline and not _started(engine.view()):
        await asyncio.sleep(0.05)
    if refuse:
        loop.remove_signal_handler(signal.SIGTSTP)
    from tui.app import ConsoleApp

    app = ConsoleApp(engine, start=False, owner=True)
    if pressed:
        app.action_suspend_process()
    code = await _run(app, engine)
    if app.detached:
        _say_detached(engine)
        return 0
    if engine.closed.is_set() and not app.quitting:
        _say_gone(engine)
        return 1
    await loop.run_in_executor(None, _wait, proc, 10.0)
    if engine.kept:  # a terminal that stopped reading gets two seconds to take it
        outlet.write(f"{engine.kept}\n".encode())
        outlet.drain(2.0)
    return code


async def attach(engine: RemoteEngine) -> int:
    """The full console on a running engine: q and d leave, every process goes on."""
    from tui.app import ConsoleApp

    await engine.subscribe()
    app = ConsoleApp(engine, start=False, owner=False)
    code = await _run(app, engine)
    if app.detached:
        _say_detached(engine)
    elif engine.closed.is_set():
        _say_gone(engine)
    return code


async def _run(app: Any, engine: RemoteEngine) -> int:
    """The app until it exits, or until the engine goes away under it."""

    async def engine_gone() -> None:
        await engine.closed.wait()
        if app.is_running and not app.quitting:
            app.exit(1, return_code=1)

    watcher = asyncio.get_running_loop().create_task(engine_gone())
    try:
        return int(await app.run_async() or 0)
    finally:
        watcher.cancel()


def _say_gone(engine: RemoteEngine) -> None:
    """Why the screen closed by itself, with the last words of the engine's own log."""
    print(f"prodserver-tui: the engine went away: {engine.why}", file=sys.stderr)
    log = Path(engine.info.get("state", "")) / "engine.log"
    with contextlib.suppress(OSError):
        last = log.read_bytes()[-4000:].decode("utf-8", "replace").splitlines()[-20:]
        if last:
            print(f"the end of {log}:", *last, sep="\n  ", file=sys.stderr)


def _say_detached(engine: RemoteEngine) -> None:
    print(
        f"prodserver-tui: detached; the engine goes on (pid {engine.info['pid']}): "
        "`prodserver-tui attach` to look again, `prodserver-tui down` to stop it"
    )


def _started(view: EngineView) -> bool:
    """Every entry was started and none is starting still (running, in backoff, broken)."""
    return view.launched and not any(p.state is State.STARTING for p in view.processes)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


# -- up ----------------------------------------------------------------------------------------


def up(argv: list[str], args: argparse.Namespace) -> int:
    """Start the engine detached from this terminal and report once every entry started."""
    try:
        found = where(args)
    except (place.PlaceError, ProjectError, Refused) as e:
        print(f"prodserver-tui: {e}", file=sys.stderr)
        return 2
    try:
        place.connect(found, timeout=2.0).close()
    except place.NotRunning:
        pass
    except place.PlaceError as e:
        print(f"prodserver-tui: {e}", file=sys.stderr)
        return 1
    else:
        pid = place.engine_pid(found)
        print(
            f"prodserver-tui: already running (pid {pid}, socket {found.socket}); nothing changed"
        )
        return 0
    proc = subprocess.Popen(
        [*ENGINE, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # until it serves: then its own log file
        start_new_session=True,
    )
    assert proc.stderr is not None
    said = proc.stderr.read()  # to EOF: the engine serves (its stderr moved) or it ended
    try:
        sock = _connect_soon(found, proc)
    except Refused as e:
        sys.stderr.write(said.decode("utf-8", "replace"))
        print(f"prodserver-tui: {e}", file=sys.stderr)
        return 1
    return asyncio.run(_report(sock))


def _connect_soon(found: place.Place, proc: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + 30.0
    while True:
        try:
            return place.connect(found, timeout=2.0)
        except place.NotRunning:
            if proc.poll() is not None:
                raise Refused(f"the engine exited with code {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise Refused(
                    f"the engine (pid {proc.pid}) does not answer on {found.socket}"
                ) from None
            time.sleep(0.05)


async def _report(sock: socket.socket) -> int:
    engine = await RemoteEngine.over(sock)
    try:
        await engine.subscribe(tail=0)
        deadline = time.monotonic() + UP_WAIT
        while time.monotonic() < deadline and not _started(engine.view()):
            await asyncio.sleep(0.1)
        view = engine.view()
        for line in _status_lines(view):
            print(line)
        print(
            f"engine pid {engine.info['pid']}, socket {engine.info['socket']}: "
            "`prodserver-tui attach` to watch, `prodserver-tui down` to stop"
        )
        return 1 if any(p.state is State.CONFIG_ERROR for p in view.processes) else 0
    finally:
        await engine.close()


# -- status, logs, scale, down -----------------------------------------------------------------


def status(view: EngineView, info: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(status_json(view, info), indent=2))
    else:
        for line in _status_lines(view):
            print(line)
    return 0


STATUS_SCHEMA = 1  # bumped only when a field changes meaning or goes: docs/protocol.md


def status_json(view: EngineView, info: dict[str, Any]) -> dict[str, Any]:
    """The stable shape scripts read (docs/protocol.md): only fields that are promised."""
    return {
        "schema": STATUS_SCHEMA,
        "engine": {
            "pid": info["pid"],
            "version": info["version"],
            "socket": info["socket"],
            "project": info["project"],
            "settings_module": info["settings_module"],
            "detached": info["detached"],
        },
        "processes": [_process_json(p) for p in view.processes],
    }


def _process_json(p: ProcessView) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "state": str(p.state),
        "detail": p.detail,
        "pid": p.pid,
        "started_at": p.started_at,
        "restarts": p.restarts,
        "last_exit": None
        if p.last_exit is None
        else {"code": p.last_exit.code, "signal": p.last_exit.signal},
        "cpu_percent": None if p.usage is None else p.usage.cpu,
        "rss_bytes": None if p.usage is None else p.usage.rss,
        "processes": None if p.usage is None else p.usage.processes,
        "url": p.url,
        "healthy": p.healthy,
        "knobs": {
            k.name: {"now": k.observed, "wanted": k.desired, "configured": k.configured}
            for k in p.knobs
        },
        "wake_up": [{"pid": w.pid, "mode": w.mode} for w in p.wake_up],
    }


def _status_lines(view: EngineView) -> list[str]:
    width = max((len(p.name) for p in view.processes), default=4)
    now = time.time()
    lines = []
    for p in view.processes:
        up_for = duration(now - p.started_at) if p.started_at and p.pid else "-"
        usage = p.usage
        knobs = " ".join(
            f"{k.name}={k.observed if k.observed is not None else k.desired}"
            + (f"/{k.configured}" if k.desired != k.configured else "")
            for k in p.knobs
        )
        cpu = f"{usage.cpu:.1f}%" if usage else "-"
        wake = wake_up(p.wake_up)
        lines.append(
            f"{p.name:<{width}}  {p.state!s:<12} pid {p.pid or '-':<7} up {up_for:<7} "
            f"cpu {cpu:<6} mem {size(usage.rss if usage else None):<8} ↻{p.restarts} {knobs}"
            + (f"  wake-up {wake}" if wake else "")
            + (f"  ({one_line(p.detail, 200)})" if p.state is not State.RUNNING else "")
        )
    return lines


async def logs(engine: RemoteEngine, names: list[str], n: int, follow: bool) -> int:
    answer = await engine.call("logs", names=names or engine.names(), n=max(0, n))
    width = max(map(len, answer["lines"]), default=0)
    for name, kept in answer["lines"].items():
        for _stream, at, texts in kept["runs"]:
            stamp = time.strftime("%H:%M:%S", time.localtime(at))
            for text in texts:
                print(f"{stamp} {name:<{width}} | {text}")
    if not follow:
        return 0
    shown = set(names or engine.names())

    class Printer:
        def on_lines(self, name: str) -> None:
            if name in shown:
                for line in engine.output(name).since(printed.get(name, 0)):
                    stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
                    print(f"{stamp} {name:<{width}} | {line.text}", flush=True)
                    printed[name] = line.seq + 1

        def on_view(self) -> None:
            pass

    printed: dict[str, int] = {}
    engine.watch(Printer())
    await engine.subscribe(tail=0)
    await engine.closed.wait()
    return 0


async def scale(engine: RemoteEngine, name: str, knobs: list[str]) -> int:
    wanted = {}
    for pair in knobs:
        knob, sep, value = pair.partition("=")
        if not sep or not knob or not value:
            raise Refused(f"{pair!r} is not KNOB=VALUE, e.g. threads=4")
        wanted[knob] = value
    for knob, value in wanted.items():
        converged = await engine.scale(name, knob, value)
        how = "done" if converged else "applied by a restart, or stuck: `status` says which"
        print(f"{name} {knob}={value}: {how}")
    return 0


async def down(engine: RemoteEngine) -> int:
    """Stop everything gracefully (task workers drain), report each entry, wait for the
    engine to end; 0 only when every process stopped within its grace period."""
    shown: dict[str, str] = {}

    class Progress:
        def on_lines(self, name: str) -> None:
            pass

        def on_view(self) -> None:
            for p in engine.view().processes:
                line = f"{p.state}" + (f": {one_line(p.detail, 200)}" if p.detail else "")
                if shown.get(p.name) != line and p.state in (State.STOPPING, State.STOPPED):
                    shown[p.name] = line
                    print(f"{p.name}: {line}", flush=True)

    engine.watch(Progress())
    await engine.subscribe(tail=0)
    clean = await engine.stop_all()
    await asyncio.wait_for(engine.closed.wait(), 30.0)
    left = [p.name for p in engine.view().processes if p.pid is not None]
    if left:
        print(f"prodserver-tui: still running: {', '.join(left)}", file=sys.stderr)
        return 1
    print("everything stopped" if clean else "everything stopped; some had to be killed")
    return 0 if clean else 1
