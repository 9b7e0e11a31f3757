"""Server mode: how soon ``attach`` shows the screen, how fast a flood reaches an attached
client, and what a detached engine costs when nobody looks.

Why this exists
---------------
With ``prodserver-tui up`` the engine runs in a process of its own and every console is a
client on its control socket (``tui/engine/server.py``, ``tui/remote.py``). That is worth it
only if attaching feels instant, if a chatty child reaches an attached console at least as
fast as a terminal multiplexer shows it, and if an engine left running for weeks with nobody
attached costs next to nothing. Issue 15 sets a target for each; this script measures them.

What it measures
----------------
Every engine runs in a throwaway project folder (a generated settings module of
``backends.command.Command`` entries) with ``XDG_RUNTIME_DIR`` and ``XDG_STATE_HOME`` inside
it, so its socket, lock and log are private to the run and gone after it.

1. attach: ``prodserver-tui up`` with 10 entries that each print a line a second; 3 s later
   (some history to send), ``prodserver-tui attach`` is launched in a real tmux pane of
   160x48 (a private tmux server, status line off) and the pane's screen is polled every
   5 ms through a tmux control-mode client (``capture-pane``, no process forked per poll)
   until it shows the titles of all 10 panes, each with its state. Timed from the
   ``respawn-pane`` that launches it. Then ``q`` (an attached console leaves, the engine
   goes on) and ``prodserver-tui down``. For reference, the same for the foreground console
   (``prodserver-tui``, no engine running: it starts its own engine process, waits until no
   entry is starting, then draws). Target: attach under 500 ms.
2. flood: one entry, ``tests/fixtures/flood.py N`` (80-byte lines as fast as it can; 500,000
   by default) behind a gate: a fifo it waits on, so the flood starts only once the client is
   attached, and after the flood exits the engine's restart waits at the gate again. Timed
   from opening the gate until the last flood line reached the client:

   * protocol client: a ``tui.remote.RemoteEngine`` in this process, subscribed, whose
     watcher counts the flood lines that arrive in its copy ring and the lines the engine
     said it skipped (``skipped`` events: the client fell behind and the engine's ring moved
     past its cursor). lines/s = flood lines received / time; received + skipped must be N.
   * attached console: ``prodserver-tui attach`` in the tmux pane, the flood's pane on
     screen (following the tail). The end is the moment the last flood line is drawn on the
     screen (polled every 20 ms). The count comes from the screen too: 2 s later the pane's
     title says how many lines its copy ring dropped, so lines received = dropped + the
     ring's 10,000 kept - the lines that were in the engine's ring before the gate opened -
     the lines that came after the last flood line (both read from the engine with a
     ``logs`` request). That is exact when the console skipped nothing; when it fell behind,
     each ``-- N lines skipped`` notice it got is one line counted too many (a handful out
     of N).
   * mprocs, as ``bench/output.py`` runs it: under a 120x40 pty read and discarded, the
     flood as its only process, timed from its start until it exits (``--on-all-finished``).

   Target: the attached client receives at least 2x the lines/s of mprocs in the same run.
3. idle: ``prodserver-tui up`` with 4 entries that sleep, no client attached (``up``'s own
   connection is gone once it has reported); after ``--idle-settle`` s (15), CPU time (user
   + system, psutil) over ``--idle-seconds`` (30) of the engine process and, on its own row,
   of its watchdog (``tui.engine.watchdog``), as % of one core. For comparison the same for
   ``prodserver-tui --headless`` (the engine in the printing process, output to /dev/null).
   Target: engine + watchdog under 0.3 % of a core.

Each measurement runs ``--runs`` times (3), its peers interleaved round by round
(``harness.rounds``); the tables show medians and the worst run. Every process started here
runs in a session of its own and is killed with every descendant seen, however the script
ends (Ctrl-C included); a line says whether any process was left behind.

Run from the repository root with the project's virtualenv (tmux on PATH; mprocs as in
bench/output.py: on PATH or in /tmp/prodserver-bench/mprocs, which ``--install-mprocs``
fills from npm)::

    .venv/bin/python bench/server.py
    .venv/bin/python bench/server.py --only attach,flood --runs 1
    .venv/bin/python bench/server.py --quick --json /tmp/server.json   # for bench/report.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil

# Run as bench/server.py or as python -m bench.server: either way bench.harness is found.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.console import is_sleeper, sleepers
from bench.harness import (
    COLS,
    FLOOD,
    MPROCS_MISSING,
    ROWS,
    Column,
    Reaper,
    Report,
    Skip,
    Table,
    TreeSampler,
    Usage,
    argv_of,
    console_argv,
    find_mprocs,
    left_behind,
    log,
    median,
    piped,
    rounds,
    stop,
    trap_signals,
    workdir,
)
from bench.output import PADDING, PTY_COLS, PTY_ROWS, mprocs_tool
from tui.engine.api import Watcher
from tui.engine.output import Line
from tui.remote import RemoteEngine

# Not ours to pass on: a terminal size that Textual would believe over the pane's, the tmux
# we may run in, the settings of whoever runs the bench.
NOT_INHERITED = ("COLUMNS", "LINES", "TMUX", "TMUX_PANE", "DJANGO_SETTINGS_MODULE")
TICKER = [
    sys.executable,
    "-u",
    "-c",
    "import time\nwhile True:\n    print('tick', time.strftime('%H:%M:%S')); time.sleep(1)",
]
# Waits for the bench to open the fifo, then becomes flood.py: the flood starts on cue, and
# the engine's restart of it after it exits waits here again.
GATE = "import os, sys\nopen(sys.argv[1]).read()\nos.execv(sys.executable, sys.argv[1:])"
STATES = "starting|running|stopping|stopped|backoff|config-error"
TITLE = re.compile(rf"│ ?(\d+)  (\S+) command  \S ({STATES})\b")
DROPPED = re.compile(r"(\d+) older lines dropped")
ENGINE_PID = re.compile(r"engine pid (\d+)")
ATTACH_SETTLE = 3.0  # s of the engine running before attach: some history to send
SCREEN_POLL = 0.005
FLOOD_POLL = 0.02
TITLE_SETTLE = 2.0  # s after the last line: the pane's title is redrawn once a second
QUIT_GRACE = 10.0
RING_LINES = 10_000  # an attached console's copy of each entry's output (RemoteEngine's default)
TARGET_ATTACH_MS = 500.0
TARGET_VS_MPROCS = 2.0
TARGET_IDLE_CPU = 0.3  # % of one core, engine + watchdog


# -- a throwaway project and its engine ----------------------------------------------------------


class Project:
    """A settings module of Command entries in a folder that also holds the engine's
    runtime and state folders: nothing of a run is left in the user's own."""

    def __init__(self, folder: Path, entries: dict[str, list[str]]) -> None:
        self.folder = folder
        self.entries = entries
        runtime = folder / "run"
        runtime.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        self.env = {**env, "XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(folder / "st")}

    def argv(self, *command: str) -> list[str]:
        return console_argv(self.folder, self.entries, *command)

    def run(self, *command: str, timeout: float = 90.0) -> str:
        """A control command to its end; its output, or RuntimeError with what it said."""
        done = subprocess.run(
            self.argv(*command),
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if done.returncode != 0:
            said = (done.stdout + done.stderr).strip()[-300:]
            raise RuntimeError(f"prodserver-tui {command[0]}: exit {done.returncode}: {said}")
        return done.stdout

    def up(self, reaper: Reaper, *options: str) -> psutil.Process:
        said = self.run("up", *options)
        found = ENGINE_PID.search(said)
        if found is None:
            raise RuntimeError(f"prodserver-tui up did not say the engine's pid: {said[-300:]}")
        engine = psutil.Process(int(found.group(1)))
        reaper.remember(engine)
        reaper.tree(engine)
        return engine

    def down(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.run("down")

    def socket(self) -> Path:
        found = sorted((self.folder / "run" / "prodserver-tui").glob("*.sock"))
        if len(found) != 1:
            raise RuntimeError(f"expected one engine socket, found {found}")
        return found[0]


@contextlib.contextmanager
def engine_up(
    reaper: Reaper, tag: str, entries: Callable[[Path], dict[str, list[str]]], *options: str
) -> Iterator[tuple[Project, psutil.Process]]:
    """A detached engine on a throwaway project (its entries made knowing its folder),
    brought down, then killed, after."""
    with workdir(tag) as tmp:
        project = Project(tmp, entries(tmp))
        engine = project.up(reaper, *options)
        try:
            yield project, engine
        finally:
            reaper.tree(engine)
            project.down()
            reaper.kill_all()


async def connect(project: Project) -> RemoteEngine:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(project.socket()))
    sock.setblocking(False)
    return await RemoteEngine.over(sock)


# -- a real terminal: a private tmux server ------------------------------------------------------


class Pane:
    """One 160x48 tmux pane on a private server, read and driven by a control-mode client:
    a poll of the screen is one command on an open pipe, not a process started."""

    def __init__(self, reaper: Reaper, folder: Path, env: dict[str, str]) -> None:
        self.socket = str(folder / "tmux.sock")
        self.env = env
        conf = folder / "tmux.conf"
        conf.write_text("set -g status off\nset -g remain-on-exit on\n")
        size = ("-x", str(COLS), "-y", str(ROWS))
        placeholder = ("sleep", "1000000")  # until respawn-pane puts the console there
        start = ("-f", str(conf), "new-session", "-d", *size, "--", *placeholder)
        subprocess.run(
            ["tmux", "-S", self.socket, *start],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        # The control client must not resize the window to its own 80x24 (set here: tmux 3.3a
        # dies when its configuration file sets it).
        self._tmux("set", "-g", "window-size", "manual")
        self.server = psutil.Process(int(self._tmux("display-message", "-p", "#{pid}")))
        reaper.remember(self.server)
        self.control = reaper.start(
            ["tmux", "-S", self.socket, "-C", "attach"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.command("refresh-client -f no-output")  # its bytes are not ours to read
        marker = "bench-ready"
        while marker not in self.command(f"display-message -p {marker}"):
            pass  # the blocks of the attach itself come first

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, *args], env=self.env, capture_output=True, text=True
        )
        return done.stdout.strip()

    def command(self, text: str) -> str:
        """One command's output (the lines between its %begin and %end)."""
        assert self.control.stdin is not None and self.control.stdout is not None
        self.control.stdin.write(text.encode() + b"\n")
        self.control.stdin.flush()
        out: list[bytes] = []
        inside = False
        while True:
            line = self.control.stdout.readline()
            if not line:
                raise RuntimeError("the tmux control client went away")
            if not inside:
                inside = line.startswith(b"%begin ")
                continue
            if line.startswith((b"%end ", b"%error ")):
                return b"".join(out).decode("utf-8", "replace")
            out.append(line)

    def launch(self, argv: list[str], cwd: Path) -> float:
        """argv in the pane, in place of what ran there; the monotonic time it was asked."""
        began = time.monotonic()
        self.command(f"respawn-pane -k -c {shlex.quote(str(cwd))} {shlex.join(argv)}")
        return began

    def screen(self) -> str:
        return self.command("capture-pane -p")

    def keys(self, *keys: str) -> None:
        self.command(f"send-keys {shlex.join(keys)}")

    def pid(self) -> psutil.Process | None:
        with contextlib.suppress(ValueError, psutil.Error):
            return psutil.Process(int(self.command("display-message -p '#{pane_pid}'").strip()))
        return None

    def dead(self) -> bool:
        return self.command("display-message -p '#{pane_dead}'").strip() == "1"

    def wait_dead(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dead():
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._tmux("kill-server")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.control.wait(timeout=5)


def wait_screen(pane: Pane, done: Callable[[str], bool], timeout: float, poll: float) -> float:
    """Poll the screen until ``done`` says so; the monotonic time of that poll's answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(pane.screen()):
            return time.monotonic()
        time.sleep(poll)
    raise TimeoutError(f"not on screen after {timeout:.0f} s; last screen:\n{pane.screen()}")


def said(e: TimeoutError) -> str:
    """The timeout, and the last words on the screen (a console that exited says why)."""
    first, *screen = str(e).splitlines()
    words = [line.strip() for line in screen if line.strip()]
    return f"{first}; its last words: {words[-1][:200]!r}" if words else first


def titles(screen: str) -> dict[str, str]:
    """Each pane's name and state, from their titles."""
    return {m.group(2): m.group(3) for m in TITLE.finditer(screen)}


# -- 1. attach -----------------------------------------------------------------------------------


def tickers(n: int = 10) -> dict[str, list[str]]:
    return {f"tick{i:02d}": TICKER for i in range(1, n + 1)}


@dataclass
class Shown:
    seconds: float | None = None
    problems: list[str] = field(default_factory=list)


def complete(names: list[str]) -> Callable[[str], bool]:
    return lambda screen: set(titles(screen)) >= set(names)


def quit_console(pane: Pane, what: str, problems: list[str]) -> None:
    pane.keys("q")
    if not pane.wait_dead(QUIT_GRACE):
        problems.append(f"{what} still running {QUIT_GRACE:.0f} s after q")


def attach_once(reaper: Reaper, timeout: float) -> Shown:
    entries = tickers()
    shown = Shown()
    with engine_up(reaper, "srv-att", lambda _: entries) as (project, _engine):
        time.sleep(ATTACH_SETTLE)
        pane = Pane(reaper, project.folder, project.env)
        try:
            began = pane.launch(project.argv("attach"), project.folder)
            try:
                seen = wait_screen(pane, complete(list(entries)), timeout, SCREEN_POLL)
                shown.seconds = seen - began
            except TimeoutError as e:
                shown.problems.append(said(e))
            quit_console(pane, "attach", shown.problems)
        finally:
            pane.close()
    return shown


def foreground_once(reaper: Reaper, timeout: float) -> Shown:
    entries = tickers()
    shown = Shown()
    with workdir("srv-fg") as tmp:
        project = Project(tmp, entries)
        pane = Pane(reaper, tmp, project.env)
        try:
            began = pane.launch(project.argv(), tmp)
            console = pane.pid()
            try:
                seen = wait_screen(pane, complete(list(entries)), timeout, SCREEN_POLL)
                shown.seconds = seen - began
            except TimeoutError as e:
                shown.problems.append(said(e))
            kids = reaper.tree(console) if console else []
            quit_console(pane, "the foreground console", shown.problems)
            left = left_behind(kids, 15.0)
            if left:
                shown.problems.append(f"left behind: {', '.join(left)}")
        finally:
            pane.close()
            reaper.kill_all()
    return shown


# -- 2. flood ------------------------------------------------------------------------------------


def last_flood_line(lines: int) -> str:
    return f"{lines - 1:010d} {PADDING.decode().rstrip()}"


def gated_flood(lines: int) -> Callable[[Path], dict[str, list[str]]]:
    def entries(folder: Path) -> dict[str, list[str]]:
        os.mkfifo(folder / "gate")
        return {"flood": [sys.executable, "-c", GATE, str(folder / "gate"), str(FLOOD), str(lines)]}

    return entries


def open_gate(fifo: Path) -> None:
    """Let the flood go; the gate must be waiting (a fifo open for writing with no reader
    would block forever)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise RuntimeError("the flood's gate is not waiting on its fifo") from e
        raise
    os.close(fd)


def wait_gate(reaper: Reaper, engine: psutil.Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(str(FLOOD) in argv_of(p) for p in reaper.tree(engine)):
            time.sleep(0.2)  # past its interpreter's start-up, at the open()
            return
        time.sleep(0.05)
    raise RuntimeError("the flood entry's gate never started")


@dataclass
class Delivery:
    seconds: float | None = None
    received: int | None = None  # flood lines that reached the client
    skipped: int | None = None  # lines the engine told it it missed (protocol client only)
    first_ms: float | None = None  # gate open -> first flood line at the client
    problems: list[str] = field(default_factory=list)

    def rate(self) -> float | None:
        return self.received / self.seconds if self.received and self.seconds else None


class Counter(Watcher):
    """Counts the flood lines arriving in a RemoteEngine's copy ring, as they come."""

    SKIPPED = re.compile(r"^-- (\d+) lines skipped")

    def __init__(self, engine: RemoteEngine, last: str) -> None:
        self.engine = engine
        self.last = last
        self.cursor = engine.output("flood").next_seq
        self.received = 0
        self.skipped = 0
        self.first_at: float | None = None
        self.done = asyncio.Event()
        self.done_at: float | None = None

    def on_lines(self, name: str) -> None:
        if name != "flood" or self.done.is_set():
            return
        ring = self.engine.output(name)
        new: list[Line] = ring.since(self.cursor)
        self.cursor = ring.next_seq
        for line in new:
            if line.stream == "sys":
                found = self.SKIPPED.match(line.text)
                self.skipped += int(found.group(1)) if found else 0
                continue
            self.received += 1
            if line.text == self.last:
                self.done_at = time.monotonic()
                self.done.set()
                return
        if new and self.first_at is None and self.received:
            self.first_at = time.monotonic()

    def on_view(self) -> None:
        pass


def client_once(reaper: Reaper, lines: int, timeout: float) -> Delivery:
    """A RemoteEngine in this process, subscribed, counting what reaches its copy ring."""
    with engine_up(reaper, "srv-cli", gated_flood(lines)) as (project, engine):
        wait_gate(reaper, engine)
        return asyncio.run(_client_flood(project, lines, timeout))


async def _client_flood(project: Project, lines: int, timeout: float) -> Delivery:
    result = Delivery()
    engine = await connect(project)
    try:
        counter = Counter(engine, last_flood_line(lines))
        engine.watch(counter)
        await engine.subscribe(tail=0)
        await asyncio.sleep(0.5)  # what the subscription sends first is in
        counter.cursor = engine.output("flood").next_seq
        began = time.monotonic()
        open_gate(project.folder / "gate")
        try:
            await asyncio.wait_for(counter.done.wait(), timeout)
        except TimeoutError:
            result.problems.append(f"the last line did not come in {timeout:.0f} s")
        if counter.done_at is not None:
            result.seconds = counter.done_at - began
        result.received, result.skipped = counter.received, counter.skipped
        if counter.first_at is not None:
            result.first_ms = 1000 * (counter.first_at - began)
        if counter.done.is_set() and counter.received + counter.skipped != lines:
            result.problems.append(
                f"received {counter.received:,} + skipped {counter.skipped:,} != {lines:,}"
            )
    finally:
        await engine.close()
    return result


async def _ring_lines(project: Project) -> list[str]:
    """The text of every line the engine keeps of the flood entry, oldest first."""
    engine = await connect(project)
    try:
        answer = await engine.call("logs", names=["flood"], n=1_000_000)
    finally:
        await engine.close()
    return [text for _stream, _at, run in answer["lines"]["flood"]["runs"] for text in run]


def console_once(reaper: Reaper, lines: int, timeout: float) -> Delivery:
    """``prodserver-tui attach`` in a tmux pane: the last line on screen, the count from
    the pane's title (see the module's docstring)."""
    result = Delivery()
    last = last_flood_line(lines)
    # The count reads what the engine's ring keeps (`logs` reads the log files when there are
    # any, and they keep every line).
    with engine_up(reaper, "srv-con", gated_flood(lines), "--no-log-files") as (project, engine):
        wait_gate(reaper, engine)
        before = len(asyncio.run(_ring_lines(project)))
        pane = Pane(reaper, project.folder, project.env)
        try:
            pane.launch(project.argv("attach"), project.folder)
            wait_screen(pane, complete(["flood"]), 30.0, SCREEN_POLL)
            time.sleep(0.5)
            began = time.monotonic()
            open_gate(project.folder / "gate")
            try:
                seen = wait_screen(pane, lambda s: last in s, timeout, FLOOD_POLL)
                result.seconds = seen - began
            except TimeoutError:
                result.problems.append(f"the last line was not drawn in {timeout:.0f} s")
            time.sleep(TITLE_SETTLE)
            dropped = DROPPED.search(pane.screen())
            kept = asyncio.run(_ring_lines(project))
            after = next((i for i, x in enumerate(kept) if x == last), None)
            if dropped is None or after is None:
                result.problems.append("no count: no 'older lines dropped' or no last line")
            else:
                total = int(dropped.group(1)) + RING_LINES
                result.received = total - before - (len(kept) - after - 1)
            quit_console(pane, "attach", result.problems)
        finally:
            pane.close()
    return result


# -- 3. idle -------------------------------------------------------------------------------------


def idle_role(proc: psutil.Process, is_root: bool) -> str | None:
    if is_root:
        return "engine"
    if is_sleeper(proc):
        return None
    return "watchdog" if "tui.engine.watchdog" in argv_of(proc) else "helpers"


def idle_window(
    reaper: Reaper, root: psutil.Process, settle: float, seconds: float
) -> dict[str, Usage]:
    """The CPU of root and its own helpers over the window, after settle; sleepers left out."""
    time.sleep(settle)
    if sum(map(is_sleeper, reaper.tree(root))) != 4:
        raise RuntimeError(f"expected 4 sleepers after {settle} s")
    sampler = TreeSampler(reaper, root.pid, idle_role)
    sampler.start()
    time.sleep(seconds)
    usage = sampler.stop()
    for role in ("engine", "watchdog", "helpers"):
        usage.setdefault(role, Usage())
    return usage


def idle_engine(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
    with engine_up(reaper, "srv-idle", lambda _: sleepers()) as (_project, engine):
        return idle_window(reaper, engine, settle, seconds)


def idle_headless(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
    with workdir("srv-hl") as tmp:
        project = Project(tmp, sleepers())
        argv = project.argv("--headless")
        with piped(reaper, argv, tmp, env=project.env) as session:
            usage = idle_window(reaper, session.root, settle, seconds)
            stop(session, None)  # SIGTERM: it stops its children as it would under systemd
        return usage


# -- report --------------------------------------------------------------------------------------

COLUMNS = [
    Column("what", "measurement"),
    Column("tool", "tool"),
    Column("value", "value (median)", "{:,.2f}", right=True),
    Column("worst", "worst run", "{:,.2f}", right=True),
    Column("ratio", "vs target / peer", "{:.2f}x", right=True),
    Column("target", "target"),
    Column("ok", "ok"),
    Column("runs", "runs"),
]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "yes" if ok else "NO"


def ok_runs(n: int, of: int) -> str:
    return f"{n}/{of} ok"


def run_attach(table: Table, reaper: Reaper, args: argparse.Namespace) -> None:
    peers = [
        ("prodserver-tui attach (engine up, 10 entries)", partial(attach_once, reaper, 30.0)),
        ("prodserver-tui (foreground, starts its engine)", partial(foreground_once, reaper, 30.0)),
    ]

    def describe(got: Shown) -> str:
        text = f"{got.seconds * 1000:.0f} ms" if got.seconds is not None else "no time"
        return text + "".join(f"; PROBLEM: {p}" for p in got.problems)

    results, _ = rounds(reaper, args.runs, peers, describe, "attach")
    for i, (name, _) in enumerate(peers):
        ms = [r.seconds * 1000 for r in results[name] if r.seconds is not None]
        ours = i == 0
        value = median(ms)
        table.add(
            what="launch -> 10 titles with states on screen, ms",
            tool=name,
            value=round(value) if value is not None else None,
            worst=round(max(ms)) if ms else None,
            target=f"< {TARGET_ATTACH_MS:g}" if ours else "(reference)",
            ok=verdict(value is not None and value < TARGET_ATTACH_MS) if ours else "",
            runs=ok_runs(sum(1 for r in results[name] if not r.problems), args.runs),
        )


def run_flood(
    table: Table, reaper: Reaper, args: argparse.Namespace, mprocs: str | None, skip: str
) -> None:
    mprocs_name = f"mprocs (pty {PTY_COLS}x{PTY_ROWS}, as bench/output.py)"
    run_mprocs = mprocs_tool(mprocs) if mprocs else None

    def mprocs_once() -> Delivery:
        if run_mprocs is None:
            raise Skip(skip)
        run = run_mprocs(reaper, args.lines, args.timeout)
        return Delivery(run.seconds, args.lines if run.seconds else None, problems=run.problems)

    peers: list[tuple[str, Callable[[], Delivery]]] = [
        ("RemoteEngine protocol client", partial(client_once, reaper, args.lines, args.timeout)),
        (
            "prodserver-tui attach, tmux 160x48",
            partial(console_once, reaper, args.lines, args.timeout),
        ),
        (mprocs_name, mprocs_once),
    ]

    def describe(got: Delivery) -> str:
        parts = [
            f"{got.seconds:.2f} s" if got.seconds else "no time",
            f"{got.rate():,.0f} lines/s" if got.rate() else "",
            "" if got.received is None else f"{got.received:,} received",
            "" if got.skipped is None else f"{got.skipped:,} skipped",
            "" if got.first_ms is None else f"first line after {got.first_ms:.0f} ms",
        ]
        text = ", ".join(p for p in parts if p)
        return text + "".join(f"; PROBLEM: {p}" for p in got.problems)

    results, skipped = rounds(reaper, args.runs, peers, describe, "flood")
    rates = {name: median([r.rate() for r in results[name]]) for name, _ in peers}
    theirs = rates.get(mprocs_name)
    for name, _ in peers:
        if name in skipped:
            table.add(what="flood lines/s delivered", tool=name, ok=skipped[name], runs="0")
            continue
        runs = results[name]
        rate = rates[name]
        ours = name != mprocs_name
        ratio = rate / theirs if rate and theirs else None
        got = [each for r in runs if (each := r.rate())]
        table.add(
            what="flood lines/s delivered",
            tool=name,
            value=round(rate) if rate else None,
            worst=round(min(got)) if got else None,
            ratio=ratio if ours else None,
            target=f">= {TARGET_VS_MPROCS:g}x mprocs" if ours else "(peer)",
            ok=verdict(ratio >= TARGET_VS_MPROCS) if ours and ratio else "",
            runs=ok_runs(sum(1 for r in runs if r.seconds and not r.problems), args.runs),
        )
        received = [r.received for r in runs if r.received is not None]
        if ours and received:
            table.add(
                what=f"  flood lines received of {args.lines:,}",
                tool=name,
                value=round(median(received) or 0),
                worst=min(received),
            )
        skips = [r.skipped for r in runs if r.skipped is not None]
        if ours and skips:
            table.add(
                what="  flood lines the engine said it skipped",
                tool=name,
                value=round(median(skips) or 0),
                worst=max(skips),
            )
    table.notes.append(f"flood: {args.lines:,} lines of 80 bytes, as fast as the child can")


def run_idle(table: Table, reaper: Reaper, args: argparse.Namespace) -> None:
    peers = [
        (
            "prodserver-tui up, no client",
            partial(idle_engine, reaper, args.idle_settle, args.idle_seconds),
        ),
        (
            "prodserver-tui --headless > /dev/null",
            partial(idle_headless, reaper, args.idle_settle, args.idle_seconds),
        ),
    ]

    def describe(got: dict[str, Usage]) -> str:
        return ", ".join(f"{role} {u.cpu:.3f}%" for role, u in got.items())

    results, _ = rounds(reaper, args.runs, peers, describe, "idle")
    for i, (name, _) in enumerate(peers):
        runs = results[name]
        both = [r["engine"].cpu + r["watchdog"].cpu for r in runs]
        value = median(both)
        ours = i == 0
        for role in ("engine", "watchdog", "helpers"):
            cpu = [r[role].cpu for r in runs if r[role].count]
            if cpu:
                table.add(
                    what=f"idle CPU, % of a core: {role}",
                    tool=name,
                    value=median(cpu),
                    worst=max(cpu),
                )
        table.add(
            what="idle CPU, % of a core: engine + watchdog",
            tool=name,
            value=value,
            worst=max(both) if both else None,
            target=f"< {TARGET_IDLE_CPU:g}" if ours else "(reference)",
            ok=verdict(value is not None and value < TARGET_IDLE_CPU) if ours else "",
            runs=ok_runs(len(runs), args.runs),
        )
    tick = 100 * 0.01 / args.idle_seconds  # the kernel counts CPU time in 10 ms ticks
    table.notes.append(
        f"idle: 4 sleeping entries, {args.idle_seconds:g} s window after {args.idle_settle:g} s;"
        f" one 10 ms tick of CPU time in that window is {tick:.3f} %"
    )


MEASUREMENTS = ("attach", "flood", "idle")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Attach time, flood delivery and idle cost of the engine server."
    )
    p.add_argument("--runs", type=int, default=3, help="runs of each (default: %(default)s)")
    p.add_argument("--lines", type=int, default=500_000, help="lines of the flood")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per flood run")
    p.add_argument("--idle-settle", type=float, default=15.0, help="seconds before the idle window")
    p.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (%(default)s s)")
    p.add_argument("--quick", action="store_true", help="1 run, 10 s idle window")
    p.add_argument("--only", default=",".join(MEASUREMENTS), help="subset of: %(default)s")
    p.add_argument("--install-mprocs", action="store_true", help="npm install mprocs if missing")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON (bench/report.py)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.idle_seconds = 1, 10.0
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurements: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.lines < 1 or args.idle_seconds <= 0:
        p.error("--runs, --lines and --idle-seconds must be positive")
    if shutil.which("tmux") is None and {"attach", "flood"} & set(args.only):
        p.error("tmux is not on PATH: attach and flood run the console in a tmux pane")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trap_signals()
    report = Report("server")
    try:
        mprocs, mprocs_skip = find_mprocs(args.install_mprocs), MPROCS_MISSING
    except Skip as e:
        mprocs, mprocs_skip = None, str(e)
    log(f"tmux {COLS}x{ROWS}; mprocs: {mprocs or mprocs_skip}")
    reaper = Reaper()
    table = report.table(f"Server mode, median of {args.runs}", COLUMNS)
    try:
        if "attach" in args.only:
            run_attach(table, reaper, args)
        if "flood" in args.only:
            run_flood(table, reaper, args, mprocs, mprocs_skip)
        if "idle" in args.only:
            run_idle(table, reaper, args)
    except KeyboardInterrupt:
        log("interrupted: killing every started process")
        return 130
    finally:
        reaper.kill_all()
        strays = reaper.strays()
    if strays:
        report.failed.append(f"STRAY processes still running: {'; '.join(strays)}")
    else:
        table.notes.append(f"no stray process: all {len(reaper.ever)} processes seen here are gone")
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
