"""What every bench script shares, so that each one holds only what it measures.

Why this exists
---------------
Every figure the README and ``docs/benchmarks.md`` state comes from a script in ``bench/``,
and ``bench/report.py`` rewrites those tables from the scripts' JSON. One table type, one
environment header, one way to run a peer (a pseudo-terminal or a pipe), one process reaper
and one process-tree sampler keep the scripts comparable and short:

* ``Table`` prints aligned text and, with ``Report.write``, the same rows as JSON (raw
  numbers, the column formats beside them), which ``report.py`` renders as Markdown;
* ``environment()``: date, machine (CPUs, model, load) and the versions of Python, Django,
  Textual, gunicorn, psycopg and the PostgreSQL server, stated with every table;
* ``Reaper``: every process started or seen is killed on the way out and checked for strays;
* ``in_pty`` / ``piped``: a peer under a 160x48 pseudo-terminal read and discarded in a
  thread (which can wait for a marker), or with its output thrown away;
* ``TreeSampler``: CPU seconds and RSS of a process tree over time, per role;
* ``rounds``: each peer once per round, interleaved, so drift on the machine hits all alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psutil

REPO = Path(__file__).resolve().parent.parent
FLOOD = REPO / "tests" / "fixtures" / "flood.py"
READ_SIZE = 1 << 20
ROWS, COLS = 48, 160
MPROCS_CACHE = Path("/tmp/prodserver-bench/mprocs")
MPROCS_MISSING = "not installed here (no mprocs on PATH; --install-mprocs fetches it from npm)"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
MB = 1024 * 1024


class Skip(Exception):
    """This peer cannot run here; the message goes in its row."""


def log(text: str) -> None:
    """Progress goes to stderr; stdout holds the tables."""
    print(text, file=sys.stderr, flush=True)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.strsignal(signum))


def trap_signals() -> None:
    """SIGINT (even if inherited ignored), SIGTERM and SIGHUP unwind the stack, so the
    ``finally`` blocks kill whatever was started."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that exist (None and NaN are runs that gave no number)."""
    good = [v for v in values if v is not None and v == v]
    return statistics.median(good) if good else None


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (1-99), interpolated between samples."""
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# -- the environment ---------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def postgres_version() -> str:
    try:
        import psycopg
    except ImportError:
        return "psycopg not installed"
    try:
        with psycopg.connect(f"{PG_DSN} dbname=postgres", connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as e:
        return f"no server ({str(e).strip().splitlines()[0][:60]})"
    return str(row[0]).split()[0] if row else "?"


def environment() -> dict[str, str]:
    """When, where and with what a table was measured (stated beside every table)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {_cpu_model()}",
        "load": load,
        "python": platform.python_version(),
        "django": _version("django"),
        "textual": _version("textual"),
        "gunicorn": _version("gunicorn"),
        "psycopg": _version("psycopg"),
        "postgresql": postgres_version(),
    }


def describe_environment(env: dict[str, str]) -> str:
    end = f", {env['load_end']} at the end" if "load_end" in env else ""
    return (
        f"{env['date']}; {env['machine']}; load average {env['load']} at the start{end}; "
        f"Python {env['python']}, Django {env['django']}, Textual {env['textual']}, "
        f"gunicorn {env['gunicorn']}, psycopg {env['psycopg']}, PostgreSQL {env['postgresql']}"
    )


# -- tables ------------------------------------------------------------------------------------


@dataclass
class Column:
    key: str
    title: str
    fmt: str = "{}"  # applied to floats; ints get thousands separators, text is shown as it is
    right: bool = False


Cell = str | int | float | None


@dataclass
class Table:
    """Rows of raw values under titled columns: text for a terminal, Markdown for the docs."""

    name: str
    columns: list[Column]
    rows: list[dict[str, Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **cells: Cell) -> None:
        unknown = set(cells) - {c.key for c in self.columns}
        if unknown:
            raise KeyError(f"{self.name}: no column {', '.join(sorted(unknown))}")
        self.rows.append(cells)

    def cell(self, row: dict[str, Cell], column: Column) -> str:
        value = row.get(column.key)
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, int):
            return f"{value:,}"
        if value != value:
            return "-"
        return column.fmt.format(value)

    def grid(self) -> list[list[str]]:
        return [[self.cell(r, c) for c in self.columns] for r in self.rows]

    def text(self) -> str:
        head = [c.title for c in self.columns]
        cells = [head, *self.grid()]
        widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

        def line(r: list[str]) -> str:
            return "  ".join(
                v.rjust(w) if c.right else v.ljust(w)
                for v, w, c in zip(r, widths, self.columns, strict=True)
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(head), rule, *map(line, cells[1:]), *self.notes])

    def markdown(self) -> str:
        def line(r: list[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in r) + " |"

        align = ["---:" if c.right else "---" for c in self.columns]
        out = [line([c.title for c in self.columns]), "|" + "|".join(align) + "|"]
        return "\n".join([*out, *map(line, self.grid())])

    @classmethod
    def load(cls, data: dict[str, Any]) -> Table:
        return cls(
            data["name"], [Column(**c) for c in data["columns"]], data["rows"], data["notes"]
        )


class Report:
    """What one script run found: its tables, the environment, the command and its duration."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.env = environment()
        self.command = shlex.join(["python", f"bench/{script}.py", *sys.argv[1:]])
        self.began = time.monotonic()
        self.tables: list[Table] = []
        self.failed: list[str] = []  # checks that did not pass: the script exits non-zero

    def table(self, name: str, columns: list[Column]) -> Table:
        table = Table(name, columns)
        self.tables.append(table)
        return table

    def finish(self, json_path: str | None) -> int:
        """Print every table (stdout), write the JSON if asked; 1 if a check failed."""
        self.env["load_end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{self.script}: {describe_environment(self.env)}")
        for table in self.tables:
            print(f"\n{table.name}\n{table.text()}")
        for failure in self.failed:
            print(f"FAILED: {failure}")
        if json_path:
            data = {
                "script": self.script,
                "command": self.command,
                "seconds": round(time.monotonic() - self.began),
                "env": self.env,
                "failed": self.failed,
                "tables": [asdict(t) for t in self.tables],
            }
            Path(json_path).write_text(json.dumps(data, indent=1) + "\n")
        return 1 if self.failed else 0


# -- processes ---------------------------------------------------------------------------------


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
        return proc.cmdline()  # re-read each time: a fork runs its parent's argv at first
    except psutil.Error:
        return []


def is_flood(proc: psutil.Process) -> bool:
    return str(FLOOD) in argv_of(proc)


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


class Reaper:
    """Every process started here, and every descendant ever seen, killed on the way out;
    ``strays()`` names those still alive at the end (a leftover is a bug of the tool)."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.seen: dict[tuple[int, float], psutil.Process] = {}
        self.ever: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.popens.append(proc)
        with contextlib.suppress(psutil.Error):
            self.remember(psutil.Process(proc.pid))
        return proc

    def remember(self, proc: psutil.Process) -> None:
        with contextlib.suppress(psutil.Error), self._lock:
            key = (proc.pid, proc.create_time())
            self.seen.setdefault(key, proc)
            self.ever.setdefault(key, proc)

    def tree(self, root: psutil.Process) -> list[psutil.Process]:
        """The descendants of root, each remembered for killing."""
        try:
            found = root.children(recursive=True)
        except psutil.Error:
            return []
        for proc in found:
            self.remember(proc)
        return found

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

    def strays(self, wait: float = 3.0) -> list[str]:
        return left_behind(list(self.ever.values()), wait)


def terminate(procs: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM to each process group, then SIGKILL to the groups left after ``timeout``."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        kill_group(proc)


def left_behind(procs: list[psutil.Process], wait: float = 2.0) -> list[str]:
    deadline = time.monotonic() + wait
    while True:
        left = [p for p in procs if alive(p)]
        if not left or time.monotonic() > deadline:
            return [describe_proc(p) for p in left]
        time.sleep(0.05)


@dataclass
class Usage:
    """One role's cost over a sampling window."""

    cpu: float = 0.0  # % of one core
    rss_max: int = 0  # the largest summed RSS of one sample
    rss_first: int = 0
    rss_last: int = 0
    count: int = 0  # the most processes seen at once in this role


class TreeSampler(threading.Thread):
    """CPU and RSS of a process tree sampled in a thread, summed per role.

    ``role(proc, is_root)`` names a process's role, or None to leave it out (the flood child,
    the idle sleepers). The tree is re-listed every ``relist`` samples (psutil walks all of
    /proc); a process that appears during the window counts with all of its CPU time.
    ``excluded_running`` says whether a left-out process was alive at the last sample."""

    def __init__(
        self,
        reaper: Reaper,
        root: int,
        role: Callable[[psutil.Process, bool], str | None],
        every: float = 1.0,
        relist: int = 1,
    ) -> None:
        super().__init__(daemon=True)
        self.reaper, self.role, self.every, self.relist = reaper, role, every, relist
        self._root: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):
            self._root = psutil.Process(root)
        self._procs: list[tuple[psutil.Process, bool]] = []
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self.usage: dict[str, Usage] = {}
        self.excluded_seen = False
        self.excluded_running = False
        self._halt = threading.Event()
        self._began = 0.0
        self._wall = 0.0

    def run(self) -> None:
        self._began = time.monotonic()
        tick = 0
        while True:
            if tick % self.relist == 0:
                self._relist()
            self._sample()
            tick += 1
            if self._halt.wait(self.every):
                self._sample()
                self._wall = time.monotonic() - self._began
                return

    def stop(self) -> dict[str, Usage]:
        self._halt.set()
        self.join()
        for (role, _pid), used in self._last.items():
            self.usage[role].cpu += 100.0 * (used - self._first[(role, _pid)]) / self._wall
        return self.usage

    def _relist(self) -> None:
        if self._root is None:
            return
        kids = self.reaper.tree(self._root)
        if alive(self._root):
            self._procs = [(self._root, True), *((p, False) for p in kids)]

    def _sample(self) -> None:
        early = time.monotonic() <= self._began + 0.5
        totals: dict[str, int] = {}
        counts: dict[str, int] = {}
        excluded = False
        for proc, is_root in self._procs:
            role = self.role(proc, is_root)
            if role is None:
                excluded = excluded or alive(proc)
                continue
            used = cpu_seconds(proc)
            if used is None:
                continue
            key = (role, proc.pid)
            self._first.setdefault(key, used if early else 0.0)
            self._last[key] = used
            totals[role] = totals.get(role, 0) + rss(proc)
            counts[role] = counts.get(role, 0) + 1
        self.excluded_seen = self.excluded_seen or excluded
        self.excluded_running = excluded
        for role, total in totals.items():
            u = self.usage.setdefault(role, Usage(rss_first=total))
            u.rss_max = max(u.rss_max, total)
            u.rss_last = total
            u.count = max(u.count, counts[role])


def tree_cpu(pids: list[int]) -> dict[int, float]:
    """user + system seconds of each process in the trees rooted at ``pids``, now."""
    seen: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                used = cpu_seconds(proc)
                if used is not None:
                    seen[proc.pid] = used
    return seen


# -- running a peer ----------------------------------------------------------------------------


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
    """A peer running under a pty (or piped to /dev/null: then master is -1)."""

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


@contextlib.contextmanager
def in_pty(
    reaper: Reaper, argv: list[str], cwd: Path, rows: int = ROWS, cols: int = COLS
) -> Iterator[Session]:
    """argv under a rows x cols pseudo-terminal (TERM=xterm-256color), its group killed after."""
    master, slave = pty.openpty()
    session: Session | None = None
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        proc = reaper.start(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
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
def piped(
    reaper: Reaper, argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> Iterator[Session]:
    """argv with its output thrown away, its group killed after."""
    devnull = subprocess.DEVNULL
    proc = reaper.start(argv, cwd=cwd, stdin=devnull, stdout=devnull, stderr=devnull, env=env)
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


def stop(
    session: Session, key: bytes | None, grace: float = 10.0, term_grace: float = 5.0
) -> tuple[float, str]:
    """Quit with key (or SIGTERM when None); SIGTERM, then SIGKILL the group if it lingers."""
    proc = session.proc
    began = time.monotonic()
    note = ""
    if key is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            session.press(key)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        if proc.poll() is None:
            note = f"still running {grace:.0f} s after {key!r}: SIGTERM"
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=term_grace)
    if proc.poll() is None:
        kill_group(proc)
        note += "; then SIGKILL" if note else "SIGKILL after SIGTERM"
    return time.monotonic() - began, note


def flood_argv(lines: int) -> list[str]:
    return [sys.executable, str(FLOOD), str(lines)]


def venv_program(name: str) -> str | None:
    for candidate in (REPO / ".venv" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def console_argv(tmp: Path, entries: dict[str, list[str]], *extra: str) -> list[str]:
    """prodserver-tui on a throwaway settings module of Command entries."""
    spec = {name: {"BACKEND": "backends.command.Command", "ARGS": a} for name, a in entries.items()}
    (tmp / "bench_settings.py").write_text(
        f'SECRET_KEY = "bench"\nPRODUCTION_PROCESSES = {spec!r}\n'
    )
    program = venv_program("prodserver-tui")
    argv = [program] if program else [sys.executable, "-m", "tui.cli"]
    return [*argv, *extra, "--settings", "bench_settings", "--pythonpath", str(tmp)]


@contextlib.contextmanager
def workdir(tag: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"prodserver-bench-{tag}-") as tmp:
        yield Path(tmp)


def find_mprocs(install: bool) -> str | None:
    """mprocs on PATH, else in the npm cache, which ``install`` fills; None if neither."""
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
    log(f"installing mprocs into {MPROCS_CACHE} ...")
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


T = TypeVar("T")


def rounds(
    reaper: Reaper,
    runs: int,
    peers: Sequence[tuple[str, Callable[[], T]]],
    describe: Callable[[T], str],
    what: str,
) -> tuple[dict[str, list[T]], dict[str, str]]:
    """Each peer once per round, in turn, so slow drifts of the machine hit all of them alike;
    a peer that cannot run here (Skip) is skipped with its reason."""
    results: dict[str, list[T]] = {name: [] for name, _ in peers}
    skipped: dict[str, str] = {}
    for round_ in range(1, runs + 1):
        for name, run in peers:
            if name in skipped:
                continue
            try:
                got = run()
            except Skip as e:
                skipped[name] = str(e)
                continue
            finally:
                reaper.kill_all()
            results[name].append(got)
            log(f"  {what} {name} run {round_}/{runs}: {describe(got)}")
    return results, skipped
