"""Output throughput and memory of prodserver-tui against honcho, mprocs and ``cat``.

Why this exists
---------------
A process console sits between every child and the person reading its output, so a chatty
child (a debug log, a runaway loop) must not make it slow, drop lines or eat memory. This script
makes that cost a number: one child, ``tests/fixtures/flood.py``, writes N lines of 80 bytes as
fast as it can (1,000,000 by default), and each tool runs it in turn:

* ``prodserver-tui --headless``, with a generated settings module holding one ``flood`` entry;
* ``honcho start``, with a one-line Procfile;
* ``mprocs``, a terminal UI, under a pseudo-terminal of 120x40 that is read and discarded, with
  ``--on-all-finished '{c: quit}'`` so that it exits when the child does. Used from ``PATH``,
  or from the npm cache ``/tmp/prodserver-bench/mprocs``, which ``--install-mprocs`` fills
  (``npm install --prefix /tmp/prodserver-bench/mprocs mprocs``); otherwise its row says
  "not found";
* ``flood.py N | cat``, as two processes: the ceiling of what a pipe can carry here.

How it is measured
------------------
* lines/s: N divided by the wall time from starting the tool until the last flood line
  (``0000999999 xxx...``) reached this script. Tools that write to a pipe write into one of
  1 MiB that this script reads in 1 MiB chunks and discards (as good as /dev/null: the reader
  is never the bottleneck), so every tool is timed the same way, including prodserver-tui, which
  restarts a child that exits and so never ends by itself. After the last line honcho and cat
  are left to exit on their own, prodserver-tui gets SIGTERM, and the time each takes to stop
  is printed per run (a hang or a non-zero exit is flagged). mprocs draws a screen rather than
  lines, so it is timed until it exits.
* lines received: flood lines (ending in the 68-byte ``x`` padding) seen up to the last one.
  A tool that drops or cuts lines shows fewer than N; a run whose last line never comes ends
  once the flood child is gone and output has been quiet for a moment. n/a for mprocs.
* peak RSS: every ~20 ms (psutil), the RSS summed over the tool's process and all of its
  descendants except the flood.py child itself (any process whose argv has flood.py's path as
  an element): the console's own cost, helpers and shell wrappers included. The tree is
  re-listed every 100 ms; a sum of RSS counts shared pages once per process.

Each tool runs ``--runs`` times (3), interleaved round by round so that drift on the machine
hits all of them alike; the table shows the median lines/s and the largest peak RSS. Every
process started here runs in a session of its own and is killed, with its descendants, however
the script ends (Ctrl-C included); temporary folders are removed; only the mprocs cache stays.

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/output.py                    # everything that is installed
    .venv/bin/python bench/output.py --install-mprocs   # fetch mprocs from npm first
    .venv/bin/python bench/output.py --lines 200000 --runs 1 --tools prodserver-tui,cat

Reference numbers measured earlier on the 2-core benchmark machine: honcho 44k lines/s with
297 MB peak RSS for its tree, mprocs 93k lines/s, cat 1.7M lines/s. Targets for prodserver-tui:
at least twice mprocs' lines/s, and peak RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import platform
import pty
import select
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

REPO = Path(__file__).resolve().parent.parent
FLOOD = REPO / "tests" / "fixtures" / "flood.py"
PADDING = b"x" * 68 + b"\n"  # how every flood line ends, whatever a tool puts before it
MPROCS_CACHE = Path("/tmp/prodserver-bench/mprocs")
MPROCS_MISSING = "not found (run with --install-mprocs or put mprocs on PATH)"
SAMPLE_EVERY = 0.02
RELIST_EVERY = 5  # samples between two listings of the process tree (psutil walks all of /proc)
READ_SIZE = 1 << 20
QUIET = 0.5  # no flood running, nothing read for this long: the last line will never come
STOP_GRACE = 15.0  # after SIGTERM; longer than that is reported as a hang, then SIGKILL
PTY_ROWS, PTY_COLS = 40, 120
TARGET_VS_MPROCS = 2.0
TARGET_RSS_MB = 80.0


class Skip(Exception):
    """This tool cannot run here; the message goes in its row."""


# -- processes --------------------------------------------------------------------------------


class Reaper:
    """Every process started here, and every descendant ever seen, killed on the way out."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            argv, start_new_session=True, **kwargs
        )
        self.popens.append(proc)
        self.note(proc.pid)
        return proc

    def note(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.remember(psutil.Process(pid))

    def remember(self, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error), self._lock:
            self.seen.setdefault((proc.pid, proc.create_time()), proc)

    def kill_all(self) -> None:
        """SIGKILL each group we started and each process we saw that is still the same one."""
        for popen in self.popens:
            if popen.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(popen.pid, signal.SIGKILL)
        with self._lock:
            procs = list(self.seen.values())
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():  # also checks that the pid was not reused
                    proc.kill()
        for popen in self.popens:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        self.popens.clear()
        with self._lock:
            self.seen.clear()


class TreeRss(threading.Thread):
    """Peak of the summed RSS of a process tree, the flood child left out, sampled in a thread."""

    def __init__(self, root: int, reaper: Reaper) -> None:
        super().__init__(daemon=True)
        self.reaper = reaper
        self.peak = 0
        self.flood_seen = False
        self.flood_running = False  # as of the last sample
        self._root: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):
            self._root = psutil.Process(root)
        self._procs: list[psutil.Process] = []
        self._halt = threading.Event()

    def run(self) -> None:
        tick = 0
        while True:
            if tick % RELIST_EVERY == 0:
                self._relist()
            self._sample()
            tick += 1
            if self._halt.wait(SAMPLE_EVERY):
                return

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak

    def _relist(self) -> None:
        if self._root is None:
            return
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            procs = [p for p in self._procs if _alive(p)]
        for proc in procs:
            self.reaper.remember(proc)
        self._procs = procs

    def _sample(self) -> None:
        total = 0
        floods = 0
        for proc in self._procs:
            try:
                if str(FLOOD) in proc.cmdline():  # re-read: a fork runs its parent's argv at first
                    floods += 1
                    continue
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        if floods:
            self.flood_seen = True
        self.flood_running = bool(floods)
        self.peak = max(self.peak, total)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_tool(
    proc: subprocess.Popen[bytes], drain: Callable[[], None], exits_by_itself: bool
) -> tuple[float, str]:
    """Wait for the tool to exit (or SIGTERM it), draining its output; seconds and a note."""
    began = time.monotonic()
    note = ""
    if exits_by_itself:
        while proc.poll() is None and time.monotonic() - began < STOP_GRACE:
            drain()
        if proc.poll() is None:
            note = f"did not exit {STOP_GRACE:.0f} s after its child did: SIGTERM"
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGTERM)
        termed = time.monotonic()
        while proc.poll() is None and time.monotonic() - termed < STOP_GRACE:
            drain()
    taken = time.monotonic() - began
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return taken, f"still running {STOP_GRACE:.0f} s after SIGTERM: killed"
    if proc.returncode != 0:
        note = f"{note}; exit code {proc.returncode}" if note else f"exit code {proc.returncode}"
    return taken, note


def widen_pipe(fd: int) -> None:
    """A 1 MiB pipe: the tool should never wait for this script to read."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, READ_SIZE)


# -- reading output ---------------------------------------------------------------------------


class LineCounter:
    """Flood lines in a pipe, up to the last one; read in big chunks, otherwise discarded."""

    def __init__(self, fd: int, lines: int, rss: TreeRss, deadline: float) -> None:
        self.fd = fd
        self.last = f"{lines - 1:010d} ".encode() + PADDING
        self.rss = rss
        self.deadline = deadline
        self.received = 0
        self.done_at: float | None = None  # monotonic time the last flood line arrived
        self.last_flood_at: float | None = None
        self.eof = False
        self.why = ""  # why reading stopped before the last line, if it did
        self._tail = b""

    def read_until_last(self) -> None:
        quiet_since = time.monotonic()
        while self.done_at is None:
            if self.eof:
                self.why = "output ended without the last line"
                return
            now = time.monotonic()
            if now > self.deadline:
                self.why = "timed out"
                return
            # A short flood can come and go between two samples, so "not running" is enough
            # once its lines have started: the last line will not come after a quiet moment.
            if self.received and not self.rss.flood_running and now - quiet_since > QUIET:
                self.why = "flood ended without its last line arriving"
                return
            if self._read(0.1):
                quiet_since = time.monotonic()

    def drain(self) -> None:
        """Read and discard whatever comes (while the tool stops), without counting it."""
        if not self.eof:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready and not os.read(self.fd, READ_SIZE):
                self.eof = True
        else:
            time.sleep(0.01)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            data, self._tail = self._tail + b"\n", b""  # a last line without its newline
        buf = self._tail + data
        cut = buf.rfind(b"\n") + 1
        whole, self._tail = buf[:cut], buf[cut:]
        end = whole.find(self.last)
        if end >= 0:
            whole = whole[: end + len(self.last)]
        found = whole.count(PADDING)
        if found:
            self.received += found
            self.last_flood_at = time.monotonic()
        if end >= 0:
            self.done_at = self.last_flood_at
        return True


# -- results ----------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float | None = None
    received: int | None = None  # None: cannot be counted (a terminal UI)
    peak_rss: int = 0
    stop_seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    def rate(self, lines: int) -> float | None:
        if not self.seconds:
            return None
        return (lines if self.received is None else self.received) / self.seconds


@dataclass
class Tool:
    name: str
    run_once: Callable[[Reaper, int, float], Run]
    skip: str = ""
    runs: list[Run] = field(default_factory=list)


# -- the tools --------------------------------------------------------------------------------


def flood_argv(lines: int) -> list[str]:
    return [sys.executable, str(FLOOD), str(lines)]


def venv_program(name: str) -> str | None:
    for candidate in (REPO / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


@contextlib.contextmanager
def workdir(tag: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"prodserver-bench-{tag}-") as tmp:
        yield Path(tmp)


def piped_run(
    reaper: Reaper,
    argv: list[str],
    cwd: Path,
    lines: int,
    timeout: float,
    before: Callable[[], list[subprocess.Popen[bytes]]] | None = None,
    stdin: int | None = None,
    close_stdin: Callable[[int], None] = os.close,
    exits_by_itself: bool = True,
) -> Run:
    """Start argv with its stdout piped here, time the flood through it, then stop it."""
    run = Run()
    err_path = cwd / "stderr.txt"
    with open(err_path, "wb") as err:
        began = time.monotonic()
        extra = before() if before else []
        proc = reaper.start(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        if stdin is not None:
            close_stdin(stdin)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        widen_pipe(fd)
        rss = TreeRss(proc.pid, reaper)
        rss.start()
        counter = LineCounter(fd, lines, rss, began + timeout)
        try:
            counter.read_until_last()
            run.received = counter.received
            end = counter.done_at or counter.last_flood_at
            run.seconds = end - began if end else None
            if counter.why:
                run.problems.append(counter.why)
            run.stop_seconds, note = stop_tool(proc, counter.drain, exits_by_itself)
            if note:
                run.problems.append(note)
            for other in extra:
                other.wait(timeout=STOP_GRACE)
        finally:
            run.peak_rss = rss.stop()
            proc.stdout.close()
    if run.problems:
        tail = err_path.read_bytes()[-300:].decode("utf-8", "replace").strip()
        if tail:
            run.problems.append(f"stderr: ...{tail}")
    return run


def prodserver_tui(reaper: Reaper, lines: int, timeout: float) -> Run:
    program = venv_program("prodserver-tui")
    argv = [program] if program else [sys.executable, "-m", "tui.cli"]
    with workdir("tui") as tmp:
        spec = {
            "flood": {"BACKEND": "backends.command.Command", "ARGS": flood_argv(lines)},
        }
        (tmp / "bench_settings.py").write_text(
            f'SECRET_KEY = "bench-output"\nPRODUCTION_PROCESSES = {spec!r}\n'
        )
        argv += ["--headless", "--settings", "bench_settings", "--pythonpath", str(tmp)]
        # It restarts a child that exits, so it never ends by itself: SIGTERM after the last line.
        return piped_run(reaper, argv, tmp, lines, timeout, exits_by_itself=False)


def honcho(reaper: Reaper, lines: int, timeout: float) -> Run:
    program = venv_program("honcho")
    if program is None:
        raise Skip("not found (.venv/bin/pip install honcho)")
    with workdir("honcho") as tmp:
        (tmp / "Procfile").write_text(f"flood: {shlex.join(flood_argv(lines))}\n")
        return piped_run(reaper, [program, "start"], tmp, lines, timeout)


def cat(reaper: Reaper, lines: int, timeout: float) -> Run:
    read_end, write_end = os.pipe()
    open_fds = {read_end, write_end}

    def close(fd: int) -> None:
        if fd in open_fds:  # once only: a closed number may be reused by another file at once
            open_fds.discard(fd)
            os.close(fd)

    def start_flood() -> list[subprocess.Popen[bytes]]:
        flood = reaper.start(
            flood_argv(lines), stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.DEVNULL
        )
        close(write_end)
        return [flood]

    with workdir("cat") as tmp:
        try:
            return piped_run(
                reaper,
                ["cat"],
                tmp,
                lines,
                timeout,
                before=start_flood,
                stdin=read_end,
                close_stdin=close,
            )
        finally:
            for fd in list(open_fds):
                close(fd)


def find_mprocs(install: bool) -> str | None:
    on_path = shutil.which("mprocs")
    if on_path:
        return on_path
    found = _cached_mprocs()
    if found or not install:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise Skip("npm not found, cannot --install-mprocs")
    MPROCS_CACHE.mkdir(parents=True, exist_ok=True)
    print(f"installing mprocs into {MPROCS_CACHE} ...", file=sys.stderr)
    done = subprocess.run(
        [npm, "install", "--prefix", str(MPROCS_CACHE), "--no-audit", "--no-fund", "mprocs"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise Skip(f"npm install mprocs failed: {done.stderr.strip()[-200:]}")
    return _cached_mprocs()


def _cached_mprocs() -> str | None:
    """The native binary in the npm package (its .bin entry is a node wrapper around it)."""
    package = MPROCS_CACHE / "node_modules" / "mprocs"
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    for binary in sorted(package.glob(f"mprocs-*-{system}-{machine}*/mprocs")):
        if os.access(binary, os.X_OK):
            return str(binary)
    wrapper = MPROCS_CACHE / "node_modules" / ".bin" / "mprocs"
    return str(wrapper) if wrapper.exists() else None


def mprocs_tool(program: str | None) -> Callable[[Reaper, int, float], Run]:
    def run_once(reaper: Reaper, lines: int, timeout: float) -> Run:
        if program is None:
            raise Skip(MPROCS_MISSING)
        with workdir("mprocs") as tmp:
            return _mprocs_run(reaper, program, tmp, lines, timeout)

    return run_once


def _mprocs_run(reaper: Reaper, program: str, tmp: Path, lines: int, timeout: float) -> Run:
    run = Run()
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", PTY_ROWS, PTY_COLS, 0, 0))
        argv = [program, "--on-all-finished", "{c: quit}", shlex.join(flood_argv(lines))]
        began = time.monotonic()
        proc = reaper.start(
            argv,
            cwd=tmp,  # no mprocs.yaml there
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color"},
        )
        os.close(slave)
        slave = -1
        rss = TreeRss(proc.pid, reaper)
        rss.start()
        try:
            deadline = began + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.05)
                if ready:
                    try:
                        os.read(master, READ_SIZE)
                    except OSError:  # EIO: every holder of the terminal closed it
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                        break
            if proc.poll() is None:
                run.problems.append("timed out")
            else:
                run.seconds = time.monotonic() - began
                run.stop_seconds = 0.0
                if proc.returncode != 0:
                    run.problems.append(f"exit code {proc.returncode}")
                if not rss.flood_seen:
                    run.problems.append("the flood child was never seen running")
        finally:
            run.peak_rss = rss.stop()
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    finally:
        for fd in (master, slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return run


# -- report -----------------------------------------------------------------------------------


def describe(run: Run, lines: int) -> str:
    rate = run.rate(lines)
    parts = [
        f"{run.seconds:.2f} s" if run.seconds else "no time",
        f"{rate:,.0f} lines/s" if rate else "",
        f"peak {run.peak_rss / 2**20:.1f} MB",
        "" if run.received is None else f"{run.received:,} lines",
        "" if run.stop_seconds is None else f"stopped {run.stop_seconds:.2f} s after the end",
    ]
    text = ", ".join(p for p in parts if p)
    return text + "".join(f"; PROBLEM: {p}" for p in run.problems)


def row(tool: Tool, lines: int, want_runs: int) -> list[str]:
    if tool.skip:
        return [tool.name, "-", "-", tool.skip, "0"]
    rates = [r for r in (run.rate(lines) for run in tool.runs) if r]
    received = [r.received for r in tool.runs if r.received is not None]
    if not received:
        got = "n/a"
    elif min(received) == max(received):
        got = f"{received[0]:,}"
    else:
        got = f"{min(received):,} to {max(received):,}"
    if received and min(received) != lines:
        got += f" (LOST up to {lines - min(received):,})"
    ok = sum(1 for r in tool.runs if r.seconds and not r.problems)
    runs = str(len(tool.runs)) if ok == len(tool.runs) == want_runs else f"{ok}/{want_runs} ok"
    return [
        tool.name,
        f"{statistics.median(rates):,.0f}" if rates else "-",
        f"{max(r.peak_rss for r in tool.runs) / 2**20:.1f}" if tool.runs else "-",
        got,
        runs,
    ]


def table(rows: list[list[str]]) -> str:
    head = ["tool", "lines/s (median)", "peak RSS MB", "lines received", "runs"]
    cells = [head, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    right = {1, 2}

    def fmt(r: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(head), rule, *map(fmt, rows)])


def verdict(tools: dict[str, Tool], lines: int) -> list[str]:
    """The targets for prodserver-tui, where both sides were measured."""
    ours, theirs = tools.get("prodserver-tui"), tools.get("mprocs")
    if ours is None or not ours.runs:
        return []
    out = []
    ours_rates = [r for r in (run.rate(lines) for run in ours.runs) if r]
    theirs_rates = [r for r in (run.rate(lines) for run in theirs.runs) if r] if theirs else []
    if ours_rates and theirs_rates:
        ratio = statistics.median(ours_rates) / statistics.median(theirs_rates)
        ok = "met" if ratio >= TARGET_VS_MPROCS else "MISSED"
        out.append(f"target lines/s >= {TARGET_VS_MPROCS:g}x mprocs: {ratio:.2f}x, {ok}")
    peak = max(r.peak_rss for r in ours.runs) / 2**20
    ok = "met" if peak < TARGET_RSS_MB else "MISSED"
    out.append(f"target peak RSS < {TARGET_RSS_MB:g} MB: {peak:.1f} MB, {ok}")
    if any(r.received != lines for r in ours.runs):
        out.append("prodserver-tui did NOT deliver every line in every run")
    return out


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Lines/s and peak RSS of process consoles under a 1M-line flood.",
    )
    p.add_argument("--lines", type=int, default=1_000_000, help="lines flood.py writes")
    p.add_argument("--runs", type=int, default=3, help="runs per tool (default: %(default)s)")
    p.add_argument(
        "--tools",
        default="prodserver-tui,honcho,mprocs,cat",
        help="comma-separated subset of: %(default)s",
    )
    p.add_argument(
        "--install-mprocs",
        action="store_true",
        help=f"npm install mprocs into {MPROCS_CACHE} if it is not on PATH or there yet",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    args = p.parse_args(argv)
    if args.lines < 1 or args.runs < 1:
        p.error("--lines and --runs must be at least 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that the finally blocks kill what was started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    wanted = [name.strip() for name in args.tools.split(",") if name.strip()]
    mprocs_skip = ""
    mprocs_program: str | None = None
    if "mprocs" in wanted:
        try:
            mprocs_program = find_mprocs(args.install_mprocs)
        except Skip as e:
            mprocs_skip = str(e)
        else:
            mprocs_skip = "" if mprocs_program else MPROCS_MISSING
    makers: dict[str, Tool] = {
        "prodserver-tui": Tool("prodserver-tui --headless", prodserver_tui),
        "honcho": Tool("honcho start", honcho),
        "mprocs": Tool(
            f"mprocs (pty {PTY_COLS}x{PTY_ROWS})", mprocs_tool(mprocs_program), mprocs_skip
        ),
        "cat": Tool("flood | cat (ceiling)", cat),
    }
    unknown = [name for name in wanted if name not in makers]
    if unknown:
        print(f"unknown tools: {', '.join(unknown)}; choose from {', '.join(makers)}")
        return 2
    tools = {name: makers[name] for name in wanted}
    print(
        f"flood: {args.lines:,} lines of 80 bytes, {args.runs} runs per tool, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )
    if mprocs_program:
        print(f"mprocs: {mprocs_program}", file=sys.stderr)
    reaper = Reaper()
    try:
        for round_ in range(1, args.runs + 1):
            for tool in tools.values():
                if tool.skip:
                    continue
                try:
                    run = tool.run_once(reaper, args.lines, args.timeout)
                except Skip as e:
                    tool.skip = str(e)
                    continue
                finally:
                    reaper.kill_all()  # anything the run left behind
                tool.runs.append(run)
                print(
                    f"  {tool.name} run {round_}/{args.runs}: {describe(run, args.lines)}",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted: every started process was killed", file=sys.stderr)
        return 130
    finally:
        reaper.kill_all()
    print()
    print(table([row(tool, args.lines, args.runs) for tool in tools.values()]))
    notes = verdict(tools, args.lines)
    if notes:
        print()
        print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
