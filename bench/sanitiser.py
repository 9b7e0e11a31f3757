"""How fast child output goes from pipe to ring: the console must keep up with a chatty child.

Feeds 1,000,000 lines of 80 bytes in 64 KiB chunks (lines straddle chunks, as from a pipe)
through Sanitiser.feed and Ring.append, best of three runs. Run from the repository root:

    .venv/bin/python -m bench.sanitiser [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Column, Report
from tui.engine.output import Ring, Sanitiser

LINES = 1_000_000
CHUNK = 64 * 1024
RUNS = 3


def stream(make: Callable[[int], str]) -> list[bytes]:
    """LINES lines of exactly 80 bytes (newline included), cut into CHUNK-sized reads."""
    data = "".join(make(i).ljust(79, ".")[:79] + "\n" for i in range(LINES)).encode()
    assert len(data) == 80 * LINES
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def best(chunks: list[bytes], ring: bool) -> float:
    times = []
    for _ in range(RUNS):
        sanitiser, kept = Sanitiser(), Ring()
        start = time.perf_counter()
        for chunk in chunks:
            lines = sanitiser.feed(chunk)
            if ring:
                kept.append("out", lines)
        times.append(time.perf_counter() - start)
    return min(times)


CASES: dict[str, Callable[[int], str]] = {
    "plain": lambda i: f"{i:07d} GET /api/items/?page=3 HTTP/1.1 200 1532",
    "SGR colour": lambda i: f"\x1b[32mINFO\x1b[0m {i:07d} GET /api/items/?page=3 HTTP/1.1 200",
    "cursor move (slow path)": lambda i: f"\x1b[2K{i:07d} GET /api/items/?page=3 HTTP/1.1 200",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = p.parse_args()
    report = Report("sanitiser")
    table = report.table(
        f"{LINES:,} lines of 80 bytes in {CHUNK // 1024} KiB chunks, best of {RUNS}",
        [
            Column("case", "case"),
            Column("both", "feed+append lines/s", "{:,.0f}", right=True),
            Column("mb", "MB/s", "{:,.0f}", right=True),
            Column("feed", "feed only lines/s", "{:,.0f}", right=True),
        ],
    )
    for name, make in CASES.items():
        chunks = stream(make)
        both, feed = best(chunks, ring=True), best(chunks, ring=False)
        table.add(case=name, both=LINES / both, mb=80 * LINES / both / 1e6, feed=LINES / feed)
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
