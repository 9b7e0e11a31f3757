"""What the full-screen console costs: idle CPU and memory, key latency under a flood, ingest.

Why this exists
---------------
``bench/output.py`` measures the headless mode. The full-screen console adds Textual, a
sampler, timers and a screen to redraw, and it is what people leave running in a terminal
for days: it must cost next to nothing when nothing happens, stay responsive to keys while
a child floods its pane, and read a chatty child at least as fast as mprocs does. Every
tool that draws a screen runs here under a pseudo-terminal of 160x48 (TERM=xterm-256color)
whose output a thread of this script reads as fast as it comes and discards.

What it measures
----------------
1. idle: four children that sleep (``python -c "import time; time.sleep(10**6)"``, as four
   ``backends.command.Command`` entries of a throwaway settings module); after 5 s of
   start-up, 30 s of: CPU time (user + system, psutil) of the console process itself, as %
   of one core, its own children excluded, and its RSS (the largest of one sample a second).
   The ``tui.watchdog`` child is reported on its own row. The same for ``honcho start``
   (a Procfile of the four sleepers, output to /dev/null; its per-child forks and ``sh``
   wrappers on a "helpers" row) and for mprocs, under the same pty, when it is available.
   The RSS growth of the console over the window is printed too (a leak shows there).
   Targets: console under 1 % of a core, RSS under 60 MB. Earlier reference on this
   machine: a bare Textual app with 3 static panes 0.13 % and 34.5 MB, honcho 0.13 %,
   mprocs below 0.03 %.
2. key latency: the console runs a ``flood`` entry (``tests/fixtures/flood.py 100000000``,
   80-byte lines as fast as it can, pane on screen) and three sleepers. After start-up,
   ``--probes`` (20) times: press ``?`` and time until the help screen's title
   ``prodserver-tui keys`` arrives on the pty (Textual draws it in one run of bytes), then
   press Escape and time until the main screen is back: the footer's "Restart" key with the
   undimmed style this script saw in the start-up output (under the help screen the footer is
   drawn dimmed, so the bytes differ). Escape includes Textual's ESCDELAY (100 ms), the wait
   that tells a lone Escape from the start of a key sequence. Then the same without the flood,
   as a baseline. Median and p95; target p95 under 100 ms (a change that fast feels instant;
   not a project requirement).
3. ingest: the console runs ``flood.py 1000000`` as its only entry (its pane on screen);
   lines/s = 1,000,000 / (the flood child's exit - its start, from psutil create_time). It
   can only exit once its last write went into the 64 KiB pipe, so by then the console has
   read all but the last 64 KiB; the exit is polled every 5 ms (create_time has a 10 ms
   resolution). The console restarts a child that exits: measuring stops at the first exit.
   The same for mprocs (``--on-all-finished '{c: quit}'``), until its flood child exits.
   Target: at least mprocs' rate (earlier reference: 93k lines/s). The console's CPU and
   peak RSS while it ingests are printed too.

The console is quit with ``q`` (graceful); if it has not exited 10 s later its process group
gets SIGTERM, then SIGKILL. Its children are checked to be gone after a graceful quit (a
leftover is a bug of the console). Every process started here runs in a session of its own
and is killed with every descendant seen, however the script ends (Ctrl-C included); at the
end every process ever seen is checked to be gone, and a line says so.

Run from the repository root with the project's virtualenv (mprocs as in bench/output.py: on
PATH or in /tmp/prodserver-bench/mprocs, which ``--install-mprocs`` fills from npm)::

    .venv/bin/python -m bench.console                       # everything, 3 runs each
    .venv/bin/python -m bench.console --install-mprocs
    .venv/bin/python -m bench.console --only latency --probes 10
    .venv/bin/python bench/console.py --only idle --runs 1 --idle-seconds 10

The table shows the median over runs (idle, ingest) or probes (latency), and the worst run
(largest CPU or RSS, smallest lines/s) or the p95 of probes. Other work on the machine skews
every number: run it on a quiet machine and compare tools measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import platform
import pty
import random
import re
import select
import shlex
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TypeVar

import psutil

# Run as bench/console.py or as python -m bench.console: either way bench.output is found.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.output import (
    FLOOD,
    MPROCS_MISSING,
    READ_SIZE,
    Reaper,
    Skip,
    find_mprocs,
    flood_argv,
    venv_program,
    workdir,
)

ROWS, COLS = 48, 160
SLEEP_TAG = "bench-console-sleeper"  # an argv element that marks the idle children
SLEEPER = [sys.executable, "-c", "import time; time.sleep(10**6)", SLEEP_TAG]
OPEN_MARK = b"prodserver-tui keys"  # the help screen's title, drawn in one run of bytes
FOOTER = re.compile(rb"\x1b\[[0-9;]*mRestart ")  # the footer's "r Restart", with its style
ESCAPE_KEY = b"\x1b"
HELP_KEY = b"?"
QUIT_KEY = b"q"
QUIT_GRACE = 10.0  # after q; then SIGTERM, then SIGKILL
TERM_GRACE = 5.0
PROBE_TIMEOUT = 10.0
POLL = 0.005  # how often the flood child's exit is looked for
TARGET_IDLE_CPU = 1.0  # % of one core
TARGET_IDLE_RSS_MB = 60.0
TARGET_LATENCY_MS = 100.0


# -- processes --------------------------------------------------------------------------------


class Tracker(Reaper):
    """A Reaper that also remembers every process ever seen, for the final check for strays."""

    def __init__(self) -> None:
        super().__init__()
        self.ever: dict[tuple[int, float], psutil.Process] = {}

    def remember(self, proc: psutil.Process) -> None:
        super().remember(proc)
        with contextlib.suppress(psutil.Error):
            self.ever.setdefault((proc.pid, proc.create_time()), proc)

    def strays(self) -> list[str]:
        return [describe_proc(p) for p in self.ever.values() if alive(p)]


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe_proc(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {shlex.join(proc.cmdline())[:100]}"
    except psutil.Error:
        return str(proc.pid)


def argv_of(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def is_sleeper(proc: psutil.Process) -> bool:
    return SLEEP_TAG in argv_of(proc)


def is_flood(proc: psutil.Process) -> bool:
    return str(FLOOD) in argv_of(proc)  # re-read: a fork runs its parent's argv at first


def tree(root: psutil.Process, tracker: Tracker) -> list[psutil.Process]:
    try:
        found = root.children(recursive=True)
    except psutil.Error:
        return []
    for proc in found:
        tracker.remember(proc)
    return found


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User + system time of the process itself (its waited-for children are not in it)."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


class PtyReader(threading.Thread):
    """Reads a pty as fast as it comes and discards it; can wait for a marker in new output."""

    def __init__(self, fd: int, keep: int = 4 << 20) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.total = 0
        self.head = bytearray()  # the first bytes, to learn how the main screen is drawn
        self._keep = keep
        self._lock = threading.Lock()
        self._want: bytes | None = None
        self._tail = b""
        self._found_at: float | None = None
        self._found = threading.Event()
        self._halt = threading.Event()
        self.eof = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.fd, READ_SIZE)
            except OSError:  # EIO: every holder of the terminal closed it
                data = b""
            now = time.monotonic()
            if not data:
                self.eof.set()
                return
            self.total += len(data)
            if len(self.head) < self._keep:
                self.head += data[: self._keep - len(self.head)]
            with self._lock:
                want = self._want
                if want is None:
                    continue
                buf = self._tail + data
                if want in buf:
                    self._want = None
                    self._found_at = now
                    self._found.set()
                else:
                    self._tail = buf[-(len(want) - 1) :] if len(want) > 1 else b""

    def expect(self, marker: bytes) -> None:
        """Look for marker in output read from now on (call before pressing the key)."""
        with self._lock:
            self._want = marker
            self._tail = b""
            self._found_at = None
            self._found.clear()

    def wait(self, timeout: float) -> float | None:
        """Monotonic time the read that completed the marker returned, or None."""
        self._found.wait(timeout)
        with self._lock:
            self._want = None
            return self._found_at

    def stop(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Session:
    """A tool running under a pty (or piped to /dev/null: then master is -1)."""

    proc: subprocess.Popen[bytes]
    root: psutil.Process
    master: int = -1
    reader: PtyReader | None = None

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        if self.master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = -1


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    return env


@contextlib.contextmanager
def in_pty(tracker: Tracker, argv: list[str], cwd: Path) -> Iterator[Session]:
    master, slave = pty.openpty()
    session: Session | None = None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        proc = tracker.start(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=tool_env())
        os.close(slave)
        slave = -1
        reader = PtyReader(master)
        reader.start()
        session = Session(proc, psutil.Process(proc.pid), master, reader)
        yield session
    finally:
        if session is not None:
            kill_group(session.proc)
            session.close()
        else:
            with contextlib.suppress(OSError):
                os.close(master)
        if slave >= 0:
            with contextlib.suppress(OSError):
                os.close(slave)


@contextlib.contextmanager
def piped(tracker: Tracker, argv: list[str], cwd: Path) -> Iterator[Session]:
    proc = tracker.start(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Session(proc, psutil.Process(proc.pid))
    finally:
        kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def stop(session: Session, key: bytes | None) -> tuple[float, str]:
    """Quit with key (or SIGTERM when None); SIGTERM, then SIGKILL the group if it lingers."""
    proc = session.proc
    began = time.monotonic()
    note = ""
    if key is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            session.press(key)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=QUIT_GRACE)
        if proc.poll() is None:
            note = f"still running {QUIT_GRACE:.0f} s after {key!r}: SIGTERM"
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_GRACE)
    if proc.poll() is None:
        kill_group(proc)
        note += "; then SIGKILL" if note else "SIGKILL after SIGTERM"
    return time.monotonic() - began, note


def left_behind(procs: list[psutil.Process], wait: float = 2.0) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        left = [p for p in procs if alive(p)]
        if not left or time.monotonic() > deadline:
            return [describe_proc(p) for p in left]
        time.sleep(0.05)


# -- settings and command lines ---------------------------------------------------------------


def console_argv(tmp: Path, entries: dict[str, list[str]]) -> list[str]:
    spec = {name: {"BACKEND": "backends.command.Command", "ARGS": a} for name, a in entries.items()}
    (tmp / "bench_settings.py").write_text(
        f'SECRET_KEY = "bench-console"\nPRODUCTION_PROCESSES = {spec!r}\n'
    )
    program = venv_program("prodserver-tui")
    argv = [program] if program else [sys.executable, "-m", "tui.cli"]
    return [*argv, "--settings", "bench_settings", "--pythonpath", str(tmp)]


def sleepers(n: int = 4) -> dict[str, list[str]]:
    return {f"sleep{i}": SLEEPER for i in range(1, n + 1)}


# -- 1. idle ----------------------------------------------------------------------------------


@dataclass
class Idle:
    cpu: float  # % of one core over the window
    rss_max: int
    rss_growth: int  # last sample - first sample
    count: int = 1  # processes in this role


def idle_window(
    tracker: Tracker,
    root: psutil.Process,
    seconds: float,
    helper_filter: Callable[[psutil.Process], bool],
) -> dict[str, Idle]:
    """CPU % and RSS of the root and, summed, of its helpers (descendants that are not work)."""

    def helpers() -> list[psutil.Process]:
        return [p for p in tree(root, tracker) if not is_sleeper(p) and helper_filter(p)]

    first: dict[str, dict[int, float]] = {"main": {}, "helpers": {}}
    last: dict[str, dict[int, float]] = {"main": {}, "helpers": {}}
    rss_samples: dict[str, list[int]] = {"main": [], "helpers": []}
    counts = {"main": 1, "helpers": 0}
    began = time.monotonic()
    end = began + seconds
    while True:
        roles = {"main": [root], "helpers": helpers()}
        counts["helpers"] = max(counts["helpers"], len(roles["helpers"]))
        for role, procs in roles.items():
            total_rss = 0
            for proc in procs:
                used = cpu_seconds(proc)
                if used is None:
                    continue
                # A helper that appears during the window: all its CPU counts.
                first[role].setdefault(proc.pid, used if time.monotonic() <= began + 0.5 else 0)
                last[role][proc.pid] = used
                total_rss += rss(proc)
            rss_samples[role].append(total_rss)
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(1.0, end - now))
    wall = time.monotonic() - began
    out = {}
    for role in ("main", "helpers"):
        used = sum(last[role][pid] - first[role][pid] for pid in last[role])
        samples = rss_samples[role]
        out[role] = Idle(
            cpu=100.0 * used / wall,
            rss_max=max(samples),
            rss_growth=samples[-1] - samples[0],
            count=counts[role],
        )
    return out


def idle_console(tracker: Tracker, settle: float, seconds: float) -> dict[str, Idle]:
    with workdir("console-idle") as tmp, in_pty(tracker, console_argv(tmp, sleepers()), tmp) as s:
        time.sleep(settle)
        kids = tree(s.root, tracker)
        if sum(map(is_sleeper, kids)) != 4:
            raise RuntimeError(f"expected 4 sleepers after {settle} s, found {len(kids)} children")
        result = idle_window(tracker, s.root, seconds, lambda p: True)
        after_quit(tracker, s, kids, "console idle")
    return result


def after_quit(tracker: Tracker, s: Session, kids: list[psutil.Process], what: str) -> None:
    """Quit the console with q, and say so if it needed signals or left a process behind."""
    kids = kids + tree(s.root, tracker)
    took, note = stop(s, QUIT_KEY)
    left = left_behind(kids)
    code = s.proc.returncode
    msg = f"    {what}: quit with q in {took:.2f} s, exit code {code}"
    if note:
        msg += f"; PROBLEM: {note}"
    if left:
        msg += f"; PROBLEM: left behind: {', '.join(left)}"
    log(msg)


def idle_honcho(tracker: Tracker, settle: float, seconds: float) -> dict[str, Idle]:
    program = venv_program("honcho")
    if program is None:
        raise Skip("not found (.venv/bin/pip install honcho)")
    with workdir("console-honcho") as tmp:
        (tmp / "Procfile").write_text(
            "".join(f"{name}: {shlex.join(a)}\n" for name, a in sleepers().items())
        )
        with piped(tracker, [program, "start"], tmp) as s:
            time.sleep(settle)
            result = idle_window(tracker, s.root, seconds, lambda p: True)
            stop(s, None)
    return result


def idle_mprocs(program: str | None) -> Callable[[Tracker, float, float], dict[str, Idle]]:
    def run(tracker: Tracker, settle: float, seconds: float) -> dict[str, Idle]:
        if program is None:
            raise Skip(MPROCS_MISSING)
        argv = [program, *(shlex.join(a) for a in sleepers().values())]
        with workdir("console-mprocs") as tmp, in_pty(tracker, argv, tmp) as s:
            time.sleep(settle)
            result = idle_window(tracker, s.root, seconds, lambda p: True)
            stop(s, None)
        return result

    return run


# -- 2. key latency ---------------------------------------------------------------------------


@dataclass
class Latency:
    opens: list[float] = field(default_factory=list)  # seconds, ? to help screen
    closes: list[float] = field(default_factory=list)  # seconds, Escape to main screen
    misses: int = 0
    problems: list[str] = field(default_factory=list)
    console_cpu: float | None = None  # % of one core while probing


def probe_latency(
    tracker: Tracker,
    flood: bool,
    probes: int,
    settle: float,
    entries: dict[str, list[str]] | None = None,
) -> Latency:
    """Help open / close latency; ``entries`` replaces the default four (bench/load20.py)."""
    if entries is None:
        entries = sleepers(4)
        if flood:
            entries = {"flood": flood_argv(100_000_000), **sleepers(3)}
    result = Latency()
    tag = "flood" if flood else "quiet"
    with workdir(f"console-{tag}") as tmp, in_pty(tracker, console_argv(tmp, entries), tmp) as s:
        assert s.reader is not None
        time.sleep(settle)
        kids = tree(s.root, tracker)
        floods = [p for p in kids if is_flood(p)]
        if flood and not floods:
            result.problems.append("the flood child is not running")
        footer = FOOTER.search(bytes(s.reader.head))
        if footer is None:
            result.problems.append("the footer was not seen in the start-up output")
            after_quit(tracker, s, kids, f"console latency {tag}")
            return result
        close_mark = footer.group(0)
        cpu_before, t_before = cpu_seconds(s.root), time.monotonic()
        rng = random.Random(probes)
        for _ in range(probes):
            s.reader.expect(OPEN_MARK)
            pressed = time.monotonic()
            s.press(HELP_KEY)
            seen = s.reader.wait(PROBE_TIMEOUT)
            if seen is None:
                result.misses += 1
                s.press(ESCAPE_KEY)  # in case it opened and the marker was missed
                time.sleep(1.0)
                continue
            result.opens.append(seen - pressed)
            time.sleep(0.05)
            s.reader.expect(close_mark)
            pressed = time.monotonic()
            s.press(ESCAPE_KEY)
            seen = s.reader.wait(PROBE_TIMEOUT)
            if seen is None:
                result.misses += 1
                result.problems.append("the main screen did not come back after Escape")
                break
            result.closes.append(seen - pressed)
            time.sleep(0.2 + rng.random() * 0.3)  # not in step with the console's timers
        cpu_after, t_after = cpu_seconds(s.root), time.monotonic()
        if cpu_before is not None and cpu_after is not None:
            result.console_cpu = 100.0 * (cpu_after - cpu_before) / (t_after - t_before)
        if flood and floods and not any(alive(p) for p in floods):
            result.problems.append("the flood child ended before the probes did")
        after_quit(tracker, s, kids, f"console latency {tag}")
    return result


# -- 3. ingest --------------------------------------------------------------------------------


@dataclass
class Ingest:
    rate: float | None = None  # lines/s
    seconds: float | None = None
    cpu: float | None = None  # % of one core of the tool's own process while the flood ran
    rss_max: int = 0
    problems: list[str] = field(default_factory=list)


def time_flood(tracker: Tracker, s: Session, lines: int, timeout: float) -> Ingest:
    """From the flood child's creation to its exit, polled; the tool's CPU and RSS meanwhile."""
    result = Ingest()
    deadline = time.monotonic() + timeout
    flood: psutil.Process | None = None
    while flood is None and time.monotonic() < deadline and s.proc.poll() is None:
        flood = next((p for p in tree(s.root, tracker) if is_flood(p)), None)
        if flood is None:
            time.sleep(POLL)
    if flood is None:
        result.problems.append("the flood child was never seen")
        return result
    try:
        created = flood.create_time()
    except psutil.Error:
        result.problems.append("the flood child was gone before it could be timed")
        return result
    cpu_start = cpu_seconds(s.root)
    t_start = time.monotonic()
    next_rss = 0.0
    while alive(flood) and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_rss:
            result.rss_max = max(result.rss_max, rss(s.root))
            next_rss = now + 0.1
        time.sleep(POLL)
    ended = time.time()
    cpu_end = cpu_seconds(s.root)
    if alive(flood):
        result.problems.append("timed out")
        return result
    result.seconds = ended - created
    result.rate = lines / result.seconds
    if cpu_start is not None and cpu_end is not None:
        result.cpu = 100.0 * (cpu_end - cpu_start) / (time.monotonic() - t_start)
    return result


def ingest_console(tracker: Tracker, lines: int, timeout: float) -> Ingest:
    entries = {"flood": flood_argv(lines)}
    with workdir("console-ingest") as tmp, in_pty(tracker, console_argv(tmp, entries), tmp) as s:
        result = time_flood(tracker, s, lines, timeout)
        after_quit(tracker, s, tree(s.root, tracker), "console ingest")
    return result


def ingest_mprocs(program: str | None) -> Callable[[Tracker, int, float], Ingest]:
    def run(tracker: Tracker, lines: int, timeout: float) -> Ingest:
        if program is None:
            raise Skip(MPROCS_MISSING)
        argv = [program, "--on-all-finished", "{c: quit}", shlex.join(flood_argv(lines))]
        with workdir("console-mprocs") as tmp, in_pty(tracker, argv, tmp) as s:
            result = time_flood(tracker, s, lines, timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.proc.wait(timeout=QUIT_GRACE)  # it quits by itself once the child is done
            if s.proc.poll() is None:
                result.problems.append("mprocs did not quit after its child")
                stop(s, None)
        return result

    return run


# -- report -----------------------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


Row = list[str]


def table(rows: list[Row]) -> str:
    head = ["measurement", "tool", "value (median)", "p95 / worst", "target", "ok"]
    cells = [head, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    right = {2, 3}

    def fmt(r: Row) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "yes" if ok else "NO"


def idle_rows(name: str, runs: list[dict[str, Idle]], helper_label: str, ours: bool) -> list[Row]:
    rows: list[Row] = []
    if not runs:
        return rows
    main = [r["main"] for r in runs]
    cpu = statistics.median(m.cpu for m in main)
    worst = max(m.cpu for m in main)
    rows.append(
        [
            "idle CPU, % of a core",
            name,
            f"{cpu:.2f}",
            f"{worst:.2f}",
            f"< {TARGET_IDLE_CPU:g}" if ours else "",
            verdict(worst < TARGET_IDLE_CPU) if ours else "",
        ]
    )
    mb = [m.rss_max / 2**20 for m in main]
    rows.append(
        [
            "idle RSS, MB (max)",
            name,
            f"{statistics.median(mb):.1f}",
            f"{max(mb):.1f}",
            f"< {TARGET_IDLE_RSS_MB:g}" if ours else "",
            verdict(max(mb) < TARGET_IDLE_RSS_MB) if ours else "",
        ]
    )
    growth = [m.rss_growth / 2**20 for m in main]
    rows.append(
        [
            "idle RSS growth in window, MB",
            name,
            f"{statistics.median(growth):+.2f}",
            f"{max(growth):+.2f}",
            "",
            "",
        ]
    )
    helpers = [r["helpers"] for r in runs]
    if any(h.count for h in helpers):
        label = f"{name}: {helper_label} ({max(h.count for h in helpers)})"
        rows.append(
            [
                "idle CPU, % of a core",
                label,
                f"{statistics.median(h.cpu for h in helpers):.2f}",
                f"{max(h.cpu for h in helpers):.2f}",
                "",
                "",
            ]
        )
        hmb = [h.rss_max / 2**20 for h in helpers]
        rows.append(
            [
                "idle RSS, MB (max, summed)",
                label,
                f"{statistics.median(hmb):.1f}",
                f"{max(hmb):.1f}",
                "",
                "",
            ]
        )
    return rows


def latency_rows(tag: str, lat: Latency) -> list[Row]:
    rows = []
    for what, values, target in (
        (f"? -> help shown, ms ({tag})", lat.opens, True),
        (f"Esc -> main screen, ms ({tag})", lat.closes, False),
    ):
        if not values:
            rows.append([what, "prodserver-tui", "-", "-", "", "NO (no sample)"])
            continue
        ms = [v * 1000 for v in values]
        p95 = pct(ms, 95)
        rows.append(
            [
                what,
                "prodserver-tui",
                f"{statistics.median(ms):.0f}",
                f"{p95:.0f} (p95, n={len(ms)})",
                f"p95 < {TARGET_LATENCY_MS:g}" if target else "",
                verdict(p95 < TARGET_LATENCY_MS) if target else "",
            ]
        )
    if lat.console_cpu is not None:
        rows.append(
            [
                f"console CPU while probing ({tag}), %",
                "prodserver-tui",
                f"{lat.console_cpu:.0f}",
                "",
                "",
                "",
            ]
        )
    return rows


def ingest_rows(name: str, runs: list[Ingest], target: float | None, ours: bool) -> list[Row]:
    rates = [r.rate for r in runs if r.rate]
    if not rates:
        return [["ingest, lines/s", name, "-", "-", "", "NO (no run)" if ours else ""]]
    worst = min(rates)
    ok = None if target is None or not ours else worst >= target
    rows = [
        [
            "ingest, lines/s",
            name,
            f"{statistics.median(rates):,.0f}",
            f"{worst:,.0f} (worst)",
            f">= {target:,.0f} (mprocs)" if ours and target else "",
            verdict(ok),
        ]
    ]
    cpus = [r.cpu for r in runs if r.cpu is not None]
    if cpus:
        rows.append(
            [
                "CPU while ingesting, %",
                name,
                f"{statistics.median(cpus):.0f}",
                f"{max(cpus):.0f}",
                "",
                "",
            ]
        )
    mb = [r.rss_max / 2**20 for r in runs if r.rss_max]
    if mb:
        rows.append(
            [
                "RSS while ingesting, MB (max)",
                name,
                f"{statistics.median(mb):.1f}",
                f"{max(mb):.1f}",
                "",
                "",
            ]
        )
    return rows


# -- main -------------------------------------------------------------------------------------

MEASUREMENTS = ("idle", "latency", "ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Idle cost, key latency and ingest of the console.")
    p.add_argument("--runs", type=int, default=3, help="runs of idle and ingest (%(default)s)")
    p.add_argument("--probes", type=int, default=20, help="key presses per latency run")
    p.add_argument("--settle", type=float, default=5.0, help="seconds of start-up before measuring")
    p.add_argument("--idle-seconds", type=float, default=30.0, help="idle window (%(default)s s)")
    p.add_argument("--lines", type=int, default=1_000_000, help="lines of the ingest flood")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per ingest run")
    p.add_argument(
        "--only", default=",".join(MEASUREMENTS), help="comma-separated subset of: %(default)s"
    )
    p.add_argument(
        "--install-mprocs", action="store_true", help="npm install mprocs if it is not there yet"
    )
    args = p.parse_args(argv)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurements: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.probes < 1 or args.lines < 1 or args.idle_seconds <= 0:
        p.error("--runs, --probes, --lines and --idle-seconds must be positive")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that the finally blocks kill what was started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    mprocs: str | None = None
    mprocs_skip = ""
    try:
        mprocs = find_mprocs(args.install_mprocs)
    except Skip as e:
        mprocs_skip = str(e)
    if mprocs is None and not mprocs_skip:
        mprocs_skip = MPROCS_MISSING
    log(
        f"pty {COLS}x{ROWS}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; mprocs: {mprocs or mprocs_skip}"
    )
    tracker = Tracker()
    rows: list[Row] = []
    try:
        if "idle" in args.only:
            rows += run_idle(tracker, args, mprocs)
        if "latency" in args.only:
            for flood in (True, False):
                tag = "flood" if flood else "no flood"
                log(f"latency, {tag}: {args.probes} probes")
                try:
                    lat = probe_latency(tracker, flood, args.probes, args.settle)
                finally:
                    tracker.kill_all()
                for problem in lat.problems:
                    log(f"    PROBLEM: {problem}")
                if lat.misses:
                    log(f"    {lat.misses} probes timed out after {PROBE_TIMEOUT:.0f} s")
                ms = ", ".join(f"{v * 1000:.0f}" for v in lat.opens)
                log(f"    ? -> help, ms: {ms}")
                ms = ", ".join(f"{v * 1000:.0f}" for v in lat.closes)
                log(f"    Esc -> main, ms: {ms}")
                rows += latency_rows(tag, lat)
        if "ingest" in args.only:
            rows += run_ingest(tracker, args, mprocs)
    except KeyboardInterrupt:
        log("interrupted: killing every started process")
        return 130
    finally:
        tracker.kill_all()
        strays = left_behind(list(tracker.ever.values()), wait=3.0)
        if strays:
            print(f"STRAY processes still running: {'; '.join(strays)}")
        else:
            print(f"no stray process: all {len(tracker.ever)} processes seen here are gone")
    print()
    print(table(rows))
    print(
        "\nvalue: median over runs (idle, ingest) or probes (latency); p95 / worst: p95 of the"
        "\nprobes, else the worst run. Esc includes Textual's ESCDELAY (100 ms). Load average"
        f"\nat the end: {os.getloadavg()[0]:.2f} (other work on the machine skews every number)."
    )
    if mprocs_skip:
        print(f"mprocs: {mprocs_skip}")
    return 0


T = TypeVar("T")


def rounds(
    tracker: Tracker,
    runs: int,
    tools: Sequence[tuple[str, Callable[[], T]]],
    describe: Callable[[T], str],
    what: str,
) -> tuple[dict[str, list[T]], dict[str, str]]:
    """Each tool once per round, in turn, so slow drifts of the machine hit all of them alike;
    a tool that cannot run here is skipped with its reason."""
    results: dict[str, list[T]] = {name: [] for name, _ in tools}
    skipped: dict[str, str] = {}
    for round_ in range(1, runs + 1):
        for name, run in tools:
            if name in skipped:
                continue
            try:
                got = run()
            except Skip as e:
                skipped[name] = str(e)
                continue
            finally:
                tracker.kill_all()
            results[name].append(got)
            log(f"  {what} {name} run {round_}/{runs}: {describe(got)}")
    return results, skipped


def run_idle(tracker: Tracker, args: argparse.Namespace, mprocs: str | None) -> list[Row]:
    tools: list[tuple[str, Callable[[Tracker, float, float], dict[str, Idle]], str, bool]] = [
        ("prodserver-tui", idle_console, "tui.watchdog", True),
        ("honcho start", idle_honcho, "helpers (forks, sh)", False),
        (f"mprocs (pty {COLS}x{ROWS})", idle_mprocs(mprocs), "helpers", False),
    ]

    def describe(got: dict[str, Idle]) -> str:
        m, h = got["main"], got["helpers"]
        return (
            f"{m.cpu:.2f}% of a core, "
            f"RSS {m.rss_max / 2**20:.1f} MB ({m.rss_growth / 2**20:+.2f} MB); "
            f"{h.count} helpers {h.cpu:.2f}%, {h.rss_max / 2**20:.1f} MB"
        )

    calls = [
        (name, partial(run, tracker, args.settle, args.idle_seconds)) for name, run, *_ in tools
    ]
    results, skipped = rounds(tracker, args.runs, calls, describe, "idle")
    rows: list[Row] = []
    for name, _, helper_label, ours in tools:
        if name in skipped:
            rows.append(["idle", name, "-", "-", "", skipped[name]])
        else:
            rows += idle_rows(name, results[name], helper_label, ours)
    return rows


def run_ingest(tracker: Tracker, args: argparse.Namespace, mprocs: str | None) -> list[Row]:
    tools: list[tuple[str, Callable[[Tracker, int, float], Ingest]]] = [
        ("prodserver-tui", ingest_console),
        (f"mprocs (pty {COLS}x{ROWS})", ingest_mprocs(mprocs)),
    ]

    def describe(got: Ingest) -> str:
        text = f"{got.rate:,.0f} lines/s in {got.seconds:.2f} s" if got.rate else "no rate"
        if got.cpu is not None:
            text += f", CPU {got.cpu:.0f}%"
        text += f", RSS {got.rss_max / 2**20:.1f} MB"
        return text + "".join(f"; PROBLEM: {p}" for p in got.problems)

    calls = [(name, partial(run, tracker, args.lines, args.timeout)) for name, run in tools]
    results, skipped = rounds(tracker, args.runs, calls, describe, "ingest")
    theirs = [r.rate for r in results[tools[1][0]] if r.rate]
    target = statistics.median(theirs) if theirs else None
    rows = ingest_rows(tools[0][0], results[tools[0][0]], target, True)
    name = tools[1][0]
    if name in skipped:
        rows.append(["ingest, lines/s", name, "-", "-", "", skipped[name]])
    else:
        rows += ingest_rows(name, results[name], None, False)
    return rows


if __name__ == "__main__":
    sys.exit(main())
