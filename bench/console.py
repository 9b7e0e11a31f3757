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
   ``backends.command.Command`` entries of a throwaway settings module); after 65 s of
   start-up (past the first minute, in which each pane's uptime counts seconds and redraws
   once a second; after it, minutes), 20 s of: CPU time (user + system, psutil) of the
   console process itself, as % of one core, its own children excluded, and its RSS (the
   largest of one sample a second).
   The console's engine (a process of its own since the console became a client of it) and
   its ``tui.engine.watchdog`` are reported on their own row. The same for ``honcho start``
   (a Procfile of the four sleepers, output to /dev/null; its per-child forks and ``sh``
   wrappers on a "helpers" row), for mprocs, under the same pty, when it is available, and
   for a bare Textual app of three static panes (what any Textual screen costs at rest).
   The RSS growth of the console over the window is printed too (a leak shows there).
   Targets: console, engine and watchdog together at most 0.3 % of a core, RSS under 60 MB.
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
3. ingest: the console runs ``flood.py 500000`` as its only entry (its pane on screen);
   lines/s = 500,000 / (the flood child's exit - its start, from psutil create_time). It
   can only exit once its last write went into the 64 KiB pipe, so by then the console has
   read all but the last 64 KiB; the exit is polled every 5 ms (create_time has a 10 ms
   resolution). The console restarts a child that exits: measuring stops at the first exit.
   The same for mprocs (``--on-all-finished '{c: quit}'``), until its flood child exits.
   Target: at least mprocs' rate, measured in the same run. The console's CPU and
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
    .venv/bin/python bench/console.py --quick --json /tmp/console.json  # for bench/report.py

The table shows the median over runs (idle, ingest) or probes (latency), and the worst run
(largest CPU or RSS, smallest lines/s) or the p95 of probes. Other work on the machine skews
every number: run it on a quiet machine and compare tools measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil

# Run as bench/console.py or as python -m bench.console: either way bench.harness is found.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    MB,
    MPROCS_MISSING,
    Column,
    Reaper,
    Report,
    Session,
    Skip,
    Table,
    TreeSampler,
    Usage,
    alive,
    argv_of,
    console_argv,
    cpu_seconds,
    find_mprocs,
    flood_argv,
    in_pty,
    is_flood,
    left_behind,
    log,
    median,
    percentile,
    piped,
    rounds,
    rss,
    stop,
    trap_signals,
    venv_program,
    workdir,
)

SLEEP_TAG = "bench-console-sleeper"  # an argv element that marks the idle children
SLEEPER = [sys.executable, "-c", "import time; time.sleep(10**6)", SLEEP_TAG]
BARE_TEXTUAL = """\
from textual.app import App
from textual.widgets import Static


class Bare(App):
    def compose(self):
        for i in range(3):
            yield Static(f"pane {i}")


Bare().run()
"""
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


def is_sleeper(proc: psutil.Process) -> bool:
    return SLEEP_TAG in argv_of(proc)


def sleepers(n: int = 4) -> dict[str, list[str]]:
    return {f"sleep{i}": SLEEPER for i in range(1, n + 1)}


# -- 1. idle ----------------------------------------------------------------------------------


def idle_window(reaper: Reaper, root: psutil.Process, seconds: float) -> dict[str, Usage]:
    """CPU % and RSS of the root and, summed, of its helpers (descendants that are not work)."""

    def role(proc: psutil.Process, is_root: bool) -> str | None:
        return "main" if is_root else None if is_sleeper(proc) else "helpers"

    sampler = TreeSampler(reaper, root.pid, role)
    sampler.start()
    time.sleep(seconds)
    usage = sampler.stop()
    usage.setdefault("helpers", Usage())
    return usage


def idle_console(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
    with workdir("console-idle") as tmp, in_pty(reaper, console_argv(tmp, sleepers()), tmp) as s:
        time.sleep(settle)
        kids = reaper.tree(s.root)
        if sum(map(is_sleeper, kids)) != 4:
            raise RuntimeError(f"expected 4 sleepers after {settle} s, found {len(kids)} children")
        result = idle_window(reaper, s.root, seconds)
        after_quit(reaper, s, kids, "console idle")
    return result


def after_quit(reaper: Reaper, s: Session, kids: list[psutil.Process], what: str) -> None:
    """Quit the console with q, and say so if it needed signals or left a process behind."""
    kids = kids + reaper.tree(s.root)
    took, note = stop(s, QUIT_KEY, QUIT_GRACE, TERM_GRACE)
    left = left_behind(kids)
    code = s.proc.returncode
    msg = f"    {what}: quit with q in {took:.2f} s, exit code {code}"
    if note:
        msg += f"; PROBLEM: {note}"
    if left:
        msg += f"; PROBLEM: left behind: {', '.join(left)}"
    log(msg)


def idle_honcho(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
    program = venv_program("honcho")
    if program is None:
        raise Skip("not found (.venv/bin/pip install honcho)")
    with workdir("console-honcho") as tmp:
        (tmp / "Procfile").write_text(
            "".join(f"{name}: {shlex.join(a)}\n" for name, a in sleepers().items())
        )
        with piped(reaper, [program, "start"], tmp) as s:
            time.sleep(settle)
            result = idle_window(reaper, s.root, seconds)
            stop(s, None)
    return result


def idle_mprocs(
    program: str | None, skip: str
) -> Callable[[Reaper, float, float], dict[str, Usage]]:
    def run(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
        if program is None:
            raise Skip(skip)
        argv = [program, *(shlex.join(a) for a in sleepers().values())]
        with workdir("console-mprocs") as tmp, in_pty(reaper, argv, tmp) as s:
            time.sleep(settle)
            result = idle_window(reaper, s.root, seconds)
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
    reaper: Reaper,
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
    with workdir(f"console-{tag}") as tmp, in_pty(reaper, console_argv(tmp, entries), tmp) as s:
        assert s.reader is not None
        time.sleep(settle)
        kids = reaper.tree(s.root)
        floods = [p for p in kids if is_flood(p)]
        if flood and not floods:
            result.problems.append("the flood child is not running")
        footer = FOOTER.search(bytes(s.reader.head))
        if footer is None:
            result.problems.append("the footer was not seen in the start-up output")
            after_quit(reaper, s, kids, f"console latency {tag}")
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
        after_quit(reaper, s, kids, f"console latency {tag}")
    return result


# -- 3. ingest --------------------------------------------------------------------------------


@dataclass
class Ingest:
    rate: float | None = None  # lines/s
    seconds: float | None = None
    cpu: float | None = None  # % of one core of the tool's own process while the flood ran
    rss_max: int = 0
    problems: list[str] = field(default_factory=list)


def time_flood(reaper: Reaper, s: Session, lines: int, timeout: float) -> Ingest:
    """From the flood child's creation to its exit, polled; the tool's CPU and RSS meanwhile."""
    result = Ingest()
    deadline = time.monotonic() + timeout
    flood: psutil.Process | None = None
    while flood is None and time.monotonic() < deadline and s.proc.poll() is None:
        flood = next((p for p in reaper.tree(s.root) if is_flood(p)), None)
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


def ingest_console(reaper: Reaper, lines: int, timeout: float) -> Ingest:
    entries = {"flood": flood_argv(lines)}
    with workdir("console-ingest") as tmp, in_pty(reaper, console_argv(tmp, entries), tmp) as s:
        result = time_flood(reaper, s, lines, timeout)
        after_quit(reaper, s, reaper.tree(s.root), "console ingest")
    return result


def ingest_mprocs(program: str | None, skip: str) -> Callable[[Reaper, int, float], Ingest]:
    def run(reaper: Reaper, lines: int, timeout: float) -> Ingest:
        if program is None:
            raise Skip(skip)
        argv = [program, "--on-all-finished", "{c: quit}", shlex.join(flood_argv(lines))]
        with workdir("console-mprocs") as tmp, in_pty(reaper, argv, tmp) as s:
            result = time_flood(reaper, s, lines, timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                s.proc.wait(timeout=QUIT_GRACE)  # it quits by itself once the child is done
            if s.proc.poll() is None:
                result.problems.append("mprocs did not quit after its child")
                stop(s, None)
        return result

    return run


def idle_bare(reaper: Reaper, settle: float, seconds: float) -> dict[str, Usage]:
    """A bare Textual app of three static panes: what any Textual screen costs at rest."""
    argv = [sys.executable, "-c", BARE_TEXTUAL]
    with workdir("console-bare") as tmp, in_pty(reaper, argv, tmp) as s:
        time.sleep(settle)
        result = idle_window(reaper, s.root, seconds)
        stop(s, None)
    return result


# -- report -----------------------------------------------------------------------------------

COLUMNS = [
    Column("what", "measurement"),
    Column("tool", "tool"),
    Column("value", "value (median)", "{:,.2f}", right=True),
    Column("worst", "p95 / worst", "{:,.2f}", right=True),
    Column("target", "target"),
    Column("ok", "ok"),
]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "yes" if ok else "NO"


def idle_rows(table: Table, name: str, runs: list[dict[str, Usage]], helpers: str) -> None:
    ours = name == "prodserver-tui"
    main = [r["main"] for r in runs]
    worst = max(m.cpu for m in main)
    table.add(
        what="idle CPU, % of a core",
        tool=name,
        value=median([m.cpu for m in main]),
        worst=worst,
        target=f"< {TARGET_IDLE_CPU:g}" if ours else "",
        ok=verdict(worst < TARGET_IDLE_CPU) if ours else "",
    )
    mb = [m.rss_max / MB for m in main]
    table.add(
        what="idle RSS, MB (max)",
        tool=name,
        value=median(mb),
        worst=max(mb),
        target=f"< {TARGET_IDLE_RSS_MB:g}" if ours else "",
        ok=verdict(max(mb) < TARGET_IDLE_RSS_MB) if ours else "",
    )
    growth = [(m.rss_last - m.rss_first) / MB for m in main]
    table.add(what="idle RSS growth in window, MB", tool=name, value=median(growth))
    extra = [r["helpers"] for r in runs]
    if any(h.count for h in extra):
        label = f"{name}: {helpers} ({max(h.count for h in extra)})"
        table.add(
            what="idle CPU, % of a core",
            tool=label,
            value=median([h.cpu for h in extra]),
            worst=max(h.cpu for h in extra),
        )
        hmb = [h.rss_max / MB for h in extra]
        table.add(what="idle RSS, MB (max, summed)", tool=label, value=median(hmb), worst=max(hmb))


def latency_rows(table: Table, tag: str, lat: Latency) -> None:
    for what, values, target in (
        (f"? -> help shown, ms ({tag})", lat.opens, True),
        (f"Esc -> main screen, ms ({tag})", lat.closes, False),
    ):
        if not values:
            table.add(what=what, tool="prodserver-tui", ok="NO (no sample)")
            continue
        ms = [v * 1000 for v in values]
        p95 = percentile(ms, 95)
        table.add(
            what=what,
            tool="prodserver-tui",
            value=round(median(ms) or 0),
            worst=round(p95),
            target=f"p95 < {TARGET_LATENCY_MS:g}" if target else "",
            ok=verdict(p95 < TARGET_LATENCY_MS) if target else "",
        )
    if lat.console_cpu is not None:
        table.add(
            what=f"console CPU while probing ({tag}), %",
            tool="prodserver-tui",
            value=lat.console_cpu,
        )


def ingest_rows(table: Table, name: str, runs: list[Ingest], target: float | None) -> None:
    ours = name == "prodserver-tui"
    rates = [r.rate for r in runs if r.rate]
    if not rates:
        table.add(what="ingest, lines/s", tool=name, ok="NO (no run)" if ours else "")
        return
    ok = None if target is None or not ours else min(rates) >= target
    table.add(
        what="ingest, lines/s",
        tool=name,
        value=round(median(rates) or 0),
        worst=round(min(rates)),
        target=f">= {target:,.0f} (mprocs)" if ours and target else "",
        ok=verdict(ok),
    )
    cpus = [r.cpu for r in runs if r.cpu is not None]
    if cpus:
        table.add(what="CPU while ingesting, %", tool=name, value=median(cpus), worst=max(cpus))
    mb = [r.rss_max / MB for r in runs if r.rss_max]
    if mb:
        table.add(what="RSS while ingesting, MB (max)", tool=name, value=median(mb), worst=max(mb))


# -- main -------------------------------------------------------------------------------------

MEASUREMENTS = ("idle", "latency", "ingest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Idle cost, key latency and ingest of the console.")
    p.add_argument("--runs", type=int, default=3, help="runs of idle and ingest (%(default)s)")
    p.add_argument("--probes", type=int, default=20, help="key presses per latency run")
    p.add_argument("--settle", type=float, default=5.0, help="seconds of start-up before probing")
    p.add_argument(
        "--idle-settle", type=float, default=65.0, help="seconds of start-up before idle"
    )
    p.add_argument("--idle-seconds", type=float, default=20.0, help="idle window (%(default)s s)")
    p.add_argument("--lines", type=int, default=500_000, help="lines of the ingest flood")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per ingest run")
    p.add_argument("--quick", action="store_true", help="1 run, 10 probes, 15 s idle")
    p.add_argument(
        "--only", default=",".join(MEASUREMENTS), help="comma-separated subset of: %(default)s"
    )
    p.add_argument("--install-mprocs", action="store_true", help="npm install mprocs if missing")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON (bench/report.py)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.probes, args.idle_seconds = 1, 10, 15.0
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurements: {', '.join(sorted(unknown))}")
    if args.runs < 1 or args.probes < 1 or args.lines < 1 or args.idle_seconds <= 0:
        p.error("--runs, --probes, --lines and --idle-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trap_signals()
    report = Report("console")
    try:
        mprocs, mprocs_skip = find_mprocs(args.install_mprocs), MPROCS_MISSING
    except Skip as e:
        mprocs, mprocs_skip = None, str(e)
    log(f"pty 160x48; mprocs: {mprocs or mprocs_skip}")
    reaper = Reaper()
    table = report.table("The console in a 160x48 pseudo-terminal", COLUMNS)
    try:
        if "idle" in args.only:
            run_idle(table, reaper, args, mprocs, mprocs_skip)
        if "latency" in args.only:
            for flood in (True, False):
                tag = "flood" if flood else "no flood"
                log(f"latency, {tag}: {args.probes} probes")
                try:
                    lat = probe_latency(reaper, flood, args.probes, args.settle)
                finally:
                    reaper.kill_all()
                for problem in lat.problems:
                    log(f"    PROBLEM: {problem}")
                if lat.misses:
                    log(f"    {lat.misses} probes timed out after {PROBE_TIMEOUT:.0f} s")
                log(f"    ? -> help, ms: {', '.join(f'{v * 1000:.0f}' for v in lat.opens)}")
                log(f"    Esc -> main, ms: {', '.join(f'{v * 1000:.0f}' for v in lat.closes)}")
                latency_rows(table, tag, lat)
        if "ingest" in args.only:
            run_ingest(table, reaper, args, mprocs, mprocs_skip)
    except KeyboardInterrupt:
        log("interrupted: killing every started process")
        return 130
    finally:
        reaper.kill_all()
        strays = reaper.strays()
    if strays:
        report.failed.append(f"STRAY processes still running: {'; '.join(strays)}")
    table.notes += [
        f"no stray process: all {len(reaper.ever)} processes seen here are gone"
        if not strays
        else "",
        "value: median over runs (idle, ingest) or probes (latency); p95 / worst: p95 of the",
        "probes, else the worst run. Esc includes Textual's ESCDELAY (100 ms).",
    ]
    return report.finish(args.json)


def run_idle(
    table: Table, reaper: Reaper, args: argparse.Namespace, mprocs: str | None, skip: str
) -> None:
    peers: list[tuple[str, Callable[[Reaper, float, float], dict[str, Usage]], str]] = [
        ("prodserver-tui", idle_console, "engine and watchdog"),
        ("honcho start", idle_honcho, "helpers (forks, sh)"),
        ("mprocs (pty 160x48)", idle_mprocs(mprocs, skip), "helpers"),
        ("bare Textual app, 3 static panes", idle_bare, "helpers"),
    ]

    def describe(got: dict[str, Usage]) -> str:
        m, h = got["main"], got["helpers"]
        return (
            f"{m.cpu:.2f}% of a core, RSS {m.rss_max / MB:.1f} MB "
            f"({(m.rss_last - m.rss_first) / MB:+.2f} MB); "
            f"{h.count} helpers {h.cpu:.2f}%, {h.rss_max / MB:.1f} MB"
        )

    calls = [
        (name, partial(run, reaper, args.idle_settle, args.idle_seconds)) for name, run, _ in peers
    ]
    results, skipped = rounds(reaper, args.runs, calls, describe, "idle")
    for name, _, helpers in peers:
        if name in skipped:
            table.add(what="idle", tool=name, ok=skipped[name])
        else:
            idle_rows(table, name, results[name], helpers)


def run_ingest(
    table: Table, reaper: Reaper, args: argparse.Namespace, mprocs: str | None, skip: str
) -> None:
    peers: list[tuple[str, Callable[[Reaper, int, float], Ingest]]] = [
        ("prodserver-tui", ingest_console),
        ("mprocs (pty 160x48)", ingest_mprocs(mprocs, skip)),
    ]

    def describe(got: Ingest) -> str:
        text = f"{got.rate:,.0f} lines/s in {got.seconds:.2f} s" if got.rate else "no rate"
        if got.cpu is not None:
            text += f", CPU {got.cpu:.0f}%"
        text += f", RSS {got.rss_max / MB:.1f} MB"
        return text + "".join(f"; PROBLEM: {p}" for p in got.problems)

    calls = [(name, partial(run, reaper, args.lines, args.timeout)) for name, run in peers]
    results, skipped = rounds(reaper, args.runs, calls, describe, "ingest")
    theirs = [r.rate for r in results[peers[1][0]] if r.rate]
    ingest_rows(table, peers[0][0], results[peers[0][0]], median(theirs))
    name = peers[1][0]
    if name in skipped:
        table.add(what="ingest, lines/s", tool=name, ok=skipped[name])
    else:
        ingest_rows(table, name, results[name], None)


if __name__ == "__main__":
    sys.exit(main())
