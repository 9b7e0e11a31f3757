"""Twenty processes in the console, one flooding: key latency, memory, lines/s ingested.

Why this exists
---------------
Issue 7 asks that with 20 processes at once, one flooding output at full speed, the UI stays
responsive, memory stays bounded and other panes keep updating. ``tests/test_load.py``
checks that in CI (through Textual's test driver); this measures it on a real terminal.

What it measures
----------------
The console (``prodserver-tui``, under a 160x48 pseudo-terminal read and discarded as fast as
it comes, as in ``bench/console.py``) runs 20 ``backends.command.Command`` entries: a flood
(``tests/fixtures/flood.py``, 80-byte lines as fast as it can), gunicorn with 2 workers
serving the test project, 6 chatty talkers (20 lines/s each) and 12 sleepers.

1. key latency: ``bench/console.py``'s probe (press ``?``, time until the help screen's title
   arrives on the pty; Escape, time until the main screen's footer is back), ``--probes``
   times, with the flood running. Median and p95.
2. load: the same console for ``--seconds`` after start-up: the console's RSS (sampled every
   0.5 s; the largest and the growth over the window), its CPU as % of one core, and lines/s
   ingested from the flood: the bytes the flood child wrote (``/proc/PID/io`` wchar, via
   psutil) / 80. A child writing into a full pipe blocks, so what it wrote is what the console
   read, give or take one 64 KiB pipe.

The console's ring is its default (10,000 lines, 4,000,000 characters per process): RSS must
stay flat however long the flood runs. Every process started is checked to be gone at the end.

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/load20.py
    .venv/bin/python bench/load20.py --probes 10 --seconds 10
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.console import COLUMNS, SLEEPER, after_quit, latency_rows, probe_latency, verdict
from bench.harness import (
    FLOOD,
    MB,
    Reaper,
    Report,
    Table,
    TreeSampler,
    console_argv,
    flood_argv,
    in_pty,
    is_flood,
    log,
    trap_signals,
    workdir,
)

FIXTURES = FLOOD.parent
DJPROJECT = FIXTURES.parent / "djproject"
LINE_BYTES = 80  # flood.py's lines
TARGET_RSS_MB = 200.0
TOOL = "prodserver-tui x20"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def twenty() -> dict[str, list[str]]:
    """The mix of tests/test_load.py, as Command entries; gunicorn serves the test project."""
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--bind=127.0.0.1:{free_port()}",
        "--workers=2",
        f"--chdir={DJPROJECT}",
        "--env=DJANGO_SETTINGS_MODULE=djproject.settings",
        "djproject.wsgi:application",
    ]
    chatty = [sys.executable, str(FIXTURES / "chatty.py"), "20"]
    return {
        "flood": flood_argv(10**12),
        "web": gunicorn,
        **{f"chatty{i}": chatty for i in range(1, 7)},
        **{f"sleep{i}": SLEEPER for i in range(1, 13)},
    }


def written_lines(proc: psutil.Process) -> float:
    try:
        return proc.io_counters().write_chars / LINE_BYTES
    except psutil.Error:
        return 0.0


def load_window(reaper: Reaper, settle: float, seconds: float) -> dict[str, float]:
    with workdir("load20") as tmp, in_pty(reaper, console_argv(tmp, twenty()), tmp) as s:
        time.sleep(settle)
        kids = reaper.tree(s.root)
        flood = next(p for p in kids if is_flood(p))
        lines0 = written_lines(flood)
        t0 = time.monotonic()
        sampler = TreeSampler(
            reaper, s.root.pid, lambda _p, is_root: "console" if is_root else None, 0.5
        )
        sampler.start()
        time.sleep(seconds)
        console = sampler.stop()["console"]
        got = {
            "flood_rate": (written_lines(flood) - lines0) / (time.monotonic() - t0),
            "cpu": console.cpu,
            "rss_max": console.rss_max,
            "rss_growth": console.rss_last - console.rss_first,
            "children": len(kids),
        }
        after_quit(reaper, s, reaper.tree(s.root), "load20")
    return got


def load_rows(table: Table, load: dict[str, float]) -> None:
    rss_mb = load["rss_max"] / MB
    table.add(what="flood lines/s ingested", tool=TOOL, value=round(load["flood_rate"]))
    table.add(what="console CPU under load, %", tool=TOOL, value=load["cpu"])
    table.add(
        what="console RSS, MB (max; growth)",
        tool=TOOL,
        value=rss_mb,
        worst=f"+{load['rss_growth'] / MB:.1f}",
        target=f"< {TARGET_RSS_MB:g}",
        ok=verdict(rss_mb < TARGET_RSS_MB),
    )
    table.add(what="processes under the console", tool=TOOL, value=int(load["children"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--probes", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0, help="load window (default 20)")
    p.add_argument("--settle", type=float, default=8.0, help="start-up before measuring")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON (bench/report.py)")
    args = p.parse_args(argv)
    trap_signals()
    report = Report("load20")
    reaper = Reaper()
    try:
        log(f"key latency, {args.probes} probes ...")
        lat = probe_latency(reaper, True, args.probes, args.settle, entries=twenty())
        reaper.kill_all()
        log(f"load window, {args.seconds:.0f} s ...")
        load = load_window(reaper, args.settle, args.seconds)
    finally:
        reaper.kill_all()
        strays = reaper.strays()
    table = report.table("20 processes, one flooding, 160x48", COLUMNS)
    latency_rows(table, "20 processes, flood", lat)
    load_rows(table, load)
    report.failed += lat.problems + ([f"{lat.misses} probes timed out"] if lat.misses else [])
    if strays:
        report.failed.append(f"STRAY processes: {'; '.join(strays)}")
    else:
        table.notes.append(f"no stray process: all {len(reaper.ever)} processes seen are gone")
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
