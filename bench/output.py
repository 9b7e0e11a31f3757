"""Output throughput and memory of prodserver-tui against honcho, mprocs and ``cat``.

Why this exists
---------------
A process console sits between every child and the person reading its output, so a chatty
child (a debug log, a runaway loop) must not make it slow, drop lines or eat memory. This script
makes that cost a number: one child, ``tests/fixtures/flood.py``, writes N lines of 80 bytes as
fast as it can (500,000 by default), and each tool runs it in turn:

* ``prodserver-tui --headless``, with a generated settings module holding one ``flood`` entry;
  every line also written to the entry's log file (rotated at 10 MB, 5 old files kept) by the
  engine's writer thread, as by default; a log file saying it lost lines (its writer did not
  keep up) is flagged as a problem of the run;
* the same with ``--no-log-files``, to show what the files cost;
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
    .venv/bin/python bench/output.py --json /tmp/output.json     # for bench/report.py

Targets for prodserver-tui: at least four times mprocs' lines/s with its log files on (the
default), and peak RSS under 80 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as bench/output.py or as python -m bench.output: either way bench.harness is found.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    MB,
    MPROCS_MISSING,
    READ_SIZE,
    Column,
    Reaper,
    Report,
    Skip,
    TreeSampler,
    console_argv,
    find_mprocs,
    flood_argv,
    in_pty,
    is_flood,
    log,
    median,
    rounds,
    trap_signals,
    venv_program,
    workdir,
)

PADDING = b"x" * 68 + b"\n"  # how every flood line ends, whatever a tool puts before it
NOT_WRITTEN = b" lines not written: "  # a log file's word for lines it lost
SAMPLE_EVERY = 0.02
RELIST_EVERY = 5  # samples between two listings of the process tree (psutil walks all of /proc)
QUIET = 0.5  # no flood running, nothing read for this long: the last line will never come
STOP_GRACE = 15.0  # after SIGTERM; longer than that is reported as a hang, then SIGKILL
PTY_ROWS, PTY_COLS = 40, 120
TARGET_VS_MPROCS = 4.0  # with every line also written to its log file, as by default
TARGET_RSS_MB = 80.0


def tree_rss(reaper: Reaper, root: int) -> TreeSampler:
    """The summed RSS of the tool's tree, its flood child left out, every 20 ms."""
    sampler = TreeSampler(
        reaper, root, lambda p, _root: None if is_flood(p) else "tool", SAMPLE_EVERY, RELIST_EVERY
    )
    sampler.start()
    return sampler


def peak(sampler: TreeSampler) -> int:
    usage = sampler.stop().get("tool")
    return usage.rss_max if usage else 0


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

    def __init__(self, fd: int, lines: int, rss: TreeSampler, deadline: float) -> None:
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
            if self.received and not self.rss.excluded_running and now - quiet_since > QUIET:
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


# -- the tools --------------------------------------------------------------------------------


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
        rss = tree_rss(reaper, proc.pid)
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
            run.peak_rss = peak(rss)
            proc.stdout.close()
    if run.problems:
        tail = err_path.read_bytes()[-300:].decode("utf-8", "replace").strip()
        if tail:
            run.problems.append(f"stderr: ...{tail}")
    return run


def prodserver_tui(reaper: Reaper, lines: int, timeout: float) -> Run:
    """Headless as run by default: each line also written to its log file (here in the run's
    folder rather than the user's state folder; rotated at 10 MB, 5 old files kept)."""
    with workdir("tui") as tmp:
        folder = tmp / "logs"
        flood = {"flood": flood_argv(lines)}
        argv = console_argv(tmp, flood, "--headless", "--log-dir", str(folder))
        # It restarts a child that exits, so it never ends by itself: SIGTERM after the last line.
        run = piped_run(reaper, argv, tmp, lines, timeout, exits_by_itself=False)
        on_disk = [line for p in folder.glob("flood.log*") for line in p.read_bytes().split(b"\n")]
        lost = [line.decode() for line in on_disk if b" sys | " in line and NOT_WRITTEN in line]
        run.problems += [f"log file: {line.partition(' | ')[2]}" for line in lost]
        if not any(line.endswith(PADDING[:-1]) for line in on_disk):
            run.problems.append("no flood line in the log files")
        return run


def prodserver_tui_no_logs(reaper: Reaper, lines: int, timeout: float) -> Run:
    with workdir("tui-no-logs") as tmp:
        argv = console_argv(tmp, {"flood": flood_argv(lines)}, "--headless", "--no-log-files")
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


def mprocs_tool(program: str | None) -> Callable[[Reaper, int, float], Run]:
    def run_once(reaper: Reaper, lines: int, timeout: float) -> Run:
        if program is None:
            raise Skip(MPROCS_MISSING)
        with workdir("mprocs") as tmp:
            return _mprocs_run(reaper, program, tmp, lines, timeout)

    return run_once


def _mprocs_run(reaper: Reaper, program: str, tmp: Path, lines: int, timeout: float) -> Run:
    """mprocs draws a screen, not lines: timed from its start until it exits."""
    run = Run()
    argv = [program, "--on-all-finished", "{c: quit}", shlex.join(flood_argv(lines))]
    began = time.monotonic()
    with in_pty(reaper, argv, tmp, PTY_ROWS, PTY_COLS) as session:  # no mprocs.yaml in tmp
        proc = session.proc
        rss = tree_rss(reaper, proc.pid)
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            if proc.poll() is None:
                run.problems.append("timed out")
            else:
                run.seconds = time.monotonic() - began
                run.stop_seconds = 0.0
                if proc.returncode != 0:
                    run.problems.append(f"exit code {proc.returncode}")
                if not rss.excluded_seen:
                    run.problems.append("the flood child was never seen running")
        finally:
            run.peak_rss = peak(rss)
    return run


# -- report -----------------------------------------------------------------------------------


def describe(run: Run, lines: int) -> str:
    rate = run.rate(lines)
    parts = [
        f"{run.seconds:.2f} s" if run.seconds else "no time",
        f"{rate:,.0f} lines/s" if rate else "",
        f"peak {run.peak_rss / MB:.1f} MB",
        "" if run.received is None else f"{run.received:,} lines",
        "" if run.stop_seconds is None else f"stopped {run.stop_seconds:.2f} s after the end",
    ]
    text = ", ".join(p for p in parts if p)
    return text + "".join(f"; PROBLEM: {p}" for p in run.problems)


COLUMNS = [
    Column("tool", "tool"),
    Column("rate", "lines/s (median)", "{:,.0f}", right=True),
    Column("ratio", "vs prodserver-tui", "{:.2f}x", right=True),
    Column("rss", "peak RSS MB (max)", "{:.1f}", right=True),
    Column("received", "lines received"),
    Column("runs", "runs"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Lines/s and peak RSS of process consoles under a 1M-line flood."
    )
    p.add_argument("--lines", type=int, default=500_000, help="lines flood.py writes")
    p.add_argument("--runs", type=int, default=3, help="runs per tool (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="1 run of 300,000 lines")
    p.add_argument(
        "--tools",
        default="prodserver-tui,prodserver-tui-no-logs,honcho,mprocs,cat",
        help="subset of: %(default)s",
    )
    p.add_argument("--install-mprocs", action="store_true", help="npm install mprocs if missing")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per run")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON (bench/report.py)")
    args = p.parse_args(argv)
    if args.quick:
        args.lines, args.runs = 300_000, 1
    trap_signals()
    report = Report("output")
    mprocs_skip = MPROCS_MISSING
    try:
        mprocs = find_mprocs(args.install_mprocs)
    except Skip as e:
        mprocs, mprocs_skip = None, str(e)

    def mprocs_run(reaper: Reaper, lines: int, timeout: float) -> Run:
        if mprocs is None:
            raise Skip(mprocs_skip)
        with workdir("mprocs") as tmp:
            return _mprocs_run(reaper, mprocs, tmp, lines, timeout)

    makers: dict[str, tuple[str, Callable[[Reaper, int, float], Run]]] = {
        "prodserver-tui": (
            "prodserver-tui --headless (log files on, watchdog included)",
            prodserver_tui,
        ),
        "prodserver-tui-no-logs": (
            "prodserver-tui --headless --no-log-files",
            prodserver_tui_no_logs,
        ),
        "honcho": ("honcho start", honcho),
        "mprocs": (f"mprocs (pty {PTY_COLS}x{PTY_ROWS})", mprocs_run),
        "cat": ("flood | cat (ceiling)", cat),
    }
    wanted = [name.strip() for name in args.tools.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in makers]
    if unknown:
        p.error(f"unknown tools: {', '.join(unknown)}; choose from {', '.join(makers)}")
    log(f"flood: {args.lines:,} lines of 80 bytes, {args.runs} runs per tool; mprocs: {mprocs}")
    reaper = Reaper()
    peers = [
        (makers[n][0], lambda run=makers[n][1]: run(reaper, args.lines, args.timeout))
        for n in wanted
    ]
    try:
        results, skipped = rounds(
            reaper, args.runs, peers, lambda r: describe(r, args.lines), "output"
        )
    except KeyboardInterrupt:
        log("interrupted: every started process was killed")
        return 130
    finally:
        reaper.kill_all()
    table = report.table(
        f"Output ingest: {args.lines:,} lines of 80 bytes, median of {args.runs}", COLUMNS
    )
    ours = median([r.rate(args.lines) for r in results.get(makers["prodserver-tui"][0], [])])
    rates: dict[str, float | None] = {}
    for name, _ in peers:
        if name in skipped:
            table.add(tool=name, received=skipped[name], runs="0")
            continue
        runs = results[name]
        rate = rates[name] = median([r.rate(args.lines) for r in runs])
        got = [r.received for r in runs if r.received is not None]
        received = "n/a (a screen)" if not got else f"{min(got):,}"
        if got and min(got) != args.lines:
            received += f" (LOST up to {args.lines - min(got):,})"
            report.failed.append(f"{name} lost lines")
        ok = sum(1 for r in runs if r.seconds and not r.problems)
        table.add(
            tool=name,
            rate=rate,
            ratio=rate / ours if rate and ours else None,
            rss=max(r.peak_rss for r in runs) / MB,
            received=received,
            runs=f"{ok}/{args.runs} ok",
        )
    mprocs_rate = rates.get(makers["mprocs"][0])
    if ours and mprocs_rate:
        ratio = ours / mprocs_rate
        table.notes.append(
            f"target lines/s >= {TARGET_VS_MPROCS:g}x mprocs: {ratio:.2f}x, "
            + ("met" if ratio >= TARGET_VS_MPROCS else "MISSED")
        )
    peak_mb = max((r.peak_rss for r in results.get(makers["prodserver-tui"][0], [])), default=0)
    if peak_mb:
        table.notes.append(
            f"target peak RSS < {TARGET_RSS_MB:g} MB: {peak_mb / MB:.1f} MB, "
            + ("met" if peak_mb / MB < TARGET_RSS_MB else "MISSED")
        )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
