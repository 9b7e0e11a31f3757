"""Shared pieces of the server-mode tests (test_server_mode.py, test_attach.py): a private site
for one engine, the CLI run as a user runs it, and a raw protocol client.

Every site lives in a short folder of its own under /tmp (a socket path must fit in 107
bytes, and pytest's tmp_path can be longer), with ``XDG_RUNTIME_DIR`` and ``XDG_STATE_HOME``
inside it, so no test sees another's engine or the user's own. ``Site.close`` stops its engine
and asserts that nothing it ever started is left.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from conftest import FIXTURES
from helpers import is_alive, tree, wait_gone

from tui.engine import place, wire

REPO = Path(__file__).resolve().parent.parent
SETTINGS = "s"  # the settings module each site writes into its project folder


def py(script: str, *args: str) -> str:
    """The ARGS of a Command entry that runs a fixture with the engine's interpreter."""
    return repr([sys.executable, str(FIXTURES / f"{script}.py"), *args])


def code(source: str) -> str:
    """The ARGS of a Command entry that runs this Python source."""
    return repr([sys.executable, "-c", textwrap.dedent(source)])


class Site:
    """One project folder with settings ``s`` (``entries``: name -> ARGS, or a whole entry
    dict as text) and the environment its engine and clients run in."""

    def __init__(self, entries: dict[str, str], extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pt-"))
        os.chmod(self.root, 0o700)
        self.project = self.root / "p"
        self.project.mkdir()
        self.write(entries)
        dropped = ("DJANGO_SETTINGS_MODULE", place.ENV_SOCKET, "TMUX", "TMUX_PANE")
        self.env = {k: v for k, v in os.environ.items() if k not in dropped}
        self.env.update(
            PYTHONPATH=str(REPO),
            XDG_RUNTIME_DIR=str(self.root / "run"),
            XDG_STATE_HOME=str(self.root / "state"),
            **(extra_env or {}),
        )
        self.place = self.locate()
        self.seen: set[int] = set()  # every process of every engine of this site

    def use_project(self, folder: Path, settings_text: str) -> None:
        """Another project folder (a copy of tests/djproject) with this text as ``s``."""
        self.project = folder
        (folder / f"{SETTINGS}.py").write_text(settings_text)
        self.place = self.locate()

    def write(self, entries: dict[str, str]) -> None:
        body = "".join(
            f"    {name!r}: {args},\n"
            if args.startswith("{")
            else f"    {name!r}: {{'BACKEND': 'backends.command.Command', 'ARGS': {args}}},\n"
            for name, args in entries.items()
        )
        (self.project / f"{SETTINGS}.py").write_text(
            f"SECRET_KEY = 'test'\nPRODUCTION_PROCESSES = {{\n{body}}}\n"
        )

    def locate(self, socket_path: str | None = None) -> place.Place:
        """Where the engine's clients find it: the same derivation, in the site's environment."""
        saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME")}
        os.environ.update({k: self.env[k] for k in saved})
        try:
            return place.place_for(self.project, SETTINGS, socket_path)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def argv(self, command: str, *args: str) -> list[str]:
        first = [command] if command else []
        return [sys.executable, "-m", "tui.cli", *first, *args, "--settings", SETTINGS]

    def cli(
        self, command: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``prodserver-tui COMMAND ARGS --settings s`` in the project folder, to its end."""
        return subprocess.run(
            self.argv(command, *args),
            cwd=self.project,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.cli("up", *args)
        self.record()
        return done

    def engine_pid(self) -> int | None:
        return place.engine_pid(self.place)

    def record(self) -> list[int]:
        """The engine's whole tree now, remembered for ``close``'s orphan check."""
        pid = self.engine_pid()
        found = tree(pid) if pid else []
        self.seen.update(found)
        return found

    def close(self) -> None:
        """Stop the engine (SIGTERM: it stops everything gracefully), kill what outlives its
        grace, remove the folder; then fail if anything this site started was left alive."""
        pid = self.engine_pid()
        self.record()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        survivors = wait_gone(sorted(self.seen), timeout=30)
        for left in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        assert survivors == [], f"left running: {described(survivors)}"


def described(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())}")
    return found


def running(site: Site) -> dict[str, tuple[int | None, int]]:
    """name -> (pid, restarts), from the engine's own view."""
    with Raw(site.place) as raw:
        view = raw.call("view")["view"]
    return {p["name"]: (p["pid"], p["restarts"]) for p in view["processes"]}


def gaps(seqs: list[int]) -> list[tuple[int, int]]:
    """Where a list of sequence numbers is not each the one before plus one."""
    return [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


class Raw:
    """A protocol client on a real socket, blocking, frames as they come: what any script in
    any language would do. Events received are kept: ``seqs``, ``skipped``, ``texts``."""

    def __init__(self, where: place.Place, read_only: bool = False, hello: bool = True) -> None:
        self.sock = place.connect(where, timeout=20)
        self.file = self.sock.makefile("rb")
        self.ids = itertools.count(1)
        self.seqs: dict[str, list[int]] = {}
        self.texts: dict[str, list[str]] = {}
        self.skipped: list[dict[str, Any]] = []
        self.info: dict[str, Any] = {}
        self.ended = threading.Event()
        self._thread: threading.Thread | None = None
        if hello:
            self.info = self.call("hello", v=wire.VERSION, read_only=read_only)["engine"]

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._thread is not None:
            self._thread.join(10)

    def send(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(wire.encode(frame))

    def read(self) -> dict[str, Any] | None:
        frame = wire.read_sync(self.file)
        if frame is not None and "ev" in frame:
            self.take(frame)
        return frame

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request and its answer (events meanwhile are taken as they come)."""
        ask = next(self.ids)
        self.send({"id": ask, "op": op, **args})
        while True:
            frame = self.read()
            assert frame is not None, f"the engine closed the connection instead of answering {op}"
            if frame.get("id") == ask:
                return frame

    def take(self, frame: dict[str, Any]) -> None:
        if frame["ev"] == "lines":
            texts = [text for _stream, _at, run in frame["runs"] for text in run]
            first = frame["first"]
            self.seqs.setdefault(frame["name"], []).extend(range(first, first + len(texts)))
            self.texts.setdefault(frame["name"], []).extend(texts)
        elif frame["ev"] == "skipped":
            self.skipped.append(frame)

    def last(self, name: str) -> int:
        return self.seqs.get(name, [-1])[-1]

    def follow(self) -> Raw:
        """Read every frame in a thread until the connection ends."""

        def run() -> None:
            with contextlib.suppress(OSError, wire.FrameError):
                while self.read() is not None:
                    pass
            self.ended.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def pump(self, condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
        """Read frames in this thread until ``condition`` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            assert self.read() is not None, f"the engine closed the connection; waited for {what}"


def engine_alive(site: Site, pid: int) -> bool:
    return is_alive(pid) and site.engine_pid() == pid


COUNTER = code("""
    import time
    for i in range(3000):
        print(f"n {i}", flush=i % 50 == 49)
        if i % 50 == 49:
            time.sleep(0.01)
    print("done", flush=True)
    time.sleep(10**6)
""")


@contextlib.contextmanager
def engine_up(entries: dict[str, str]) -> Iterator[Site]:
    """A site whose engine `up` started (and said so), closed after: nothing left behind."""
    site = Site(entries)
    try:
        done = site.up()
        assert done.returncode == 0, done.stdout + done.stderr
        yield site
    finally:
        site.close()


@contextlib.contextmanager
def shared_site() -> Iterator[Site]:
    """An engine for many checks: chatty (200 lines/s), a child whose grandchild left its
    session, and a counter that prints 3000 numbered lines in a burst at each start, then
    "done". Each check records the pids it must not change."""
    entries = {
        "chatty": py("chatty", "200"),
        "escapee": py("spawns_grandchild", "escape"),
        "counter": COUNTER,
    }
    with engine_up(entries) as site:
        yield site
