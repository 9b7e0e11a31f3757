"""The chaos suite, long version: a minute of faults under load, then the books are checked.

Why this exists
---------------
``tests/chaos`` runs the same scenario for 25 s in CI. Rare interleavings (a master killed
while its worker is stopped, a restart during a scale, recovery racing a respawn) need more
faults than that to show up; this runs the scenario longer and prints what happened.

What it does
------------
The scenario of ``tests/chaos/scenario.py`` (no copy of it here): a migrated copy of the test
project in a temporary directory (SQLite, or with ``--postgres`` a scratch database on the
local PostgreSQL server, dropped afterwards); this process becomes the supervisor (watchdog on,
task statistics polled) of gunicorn with 2 workers, two task worker masters of 2 processes x
2 threads and a producer enqueueing ``record_slowly`` tasks (``--rate`` per second, each
sleeping ``--task-seconds``). For ``--seconds`` it injects a fault every 0.4-1.2 s (SIGKILL of
a task worker process, a master, a gunicorn worker or its master; SIGSTOP then SIGCONT 0.5-2 s
later; restart or scale through the Supervisor API), then stops the load, lets the queue
drain, restores the configured scale and stops everything.

The table: tasks enqueued / finished / duplicated / lost (a re-run is a duplicate unless the
process of the run before was SIGKILLed: see ``tally``), restarts per entry, faults by kind,
the largest RSS of this supervising process, ring sizes against their bounds, and the
processes that outlived the stop (orphans). ``--seed`` replays a run's choice of faults (the
timing of the machine still differs).

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/chaos.py                  # 60 s
    .venv/bin/python bench/chaos.py --seconds 300 --rate 20
    .venv/bin/python bench/chaos.py --postgres
    .venv/bin/python bench/chaos.py --json /tmp/chaos.json    # for bench/report.py

The test project rather than the bundled demo (``tui/demo``): its ``record_slowly`` task
records every run with the pid that ran it, which is what tells a duplicate from a re-run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from chaos.scenario import FAULTS, Report, prepare, run, tally

from bench import harness
from bench.harness import MB, Column


def rows(report: Report) -> list[tuple[str, str]]:
    t = tally(report)
    out = [
        ("chaos", f"{report.seconds:.0f} s, seed {report.seed}"),
        ("tasks enqueued", str(t.enqueued)),
        ("tasks finished (SUCCESSFUL)", str(t.finished)),
        ("tasks duplicated", str(t.duplicated)),
        ("tasks lost", str(t.lost)),
        ("re-runs after a SIGKILL mid-run", str(t.reruns_after_kill)),
        ("taken from a live worker", str(t.requeued_from_live)),
        ("stuck tasks requeued by the masters", str(report.requeued)),
        ("stuck after the drain", str(report.stuck_at_end)),
    ]
    out += [(f"restarts: {name}", str(n)) for name, n in report.restarts.items()]
    out += [(f"faults: {kind}", str(report.faults.get(kind, 0))) for kind in FAULTS]
    out += [
        ("pids taken down by SIGKILL", str(len(set(report.killed)))),
        ("API calls that raised, loop errors", str(len(report.errors))),
        ("retries later than their backoff", str(len(report.late))),
        ("slowest exit -> running again", f"{report.slowest_comeback:.1f} s"),
        ("all back in shape, web answers", "yes" if report.web_answers else "NO"),
        ("stop_all killed nothing", "yes" if report.stopped_cleanly else "NO"),
        ("max RSS of the supervisor", f"{report.rss_max / MB:.1f} MB"),
        ("RSS at start", f"{report.rss_first / MB:.1f} MB"),
        ("largest ring (lines / bound)", f"{report.ring_lines_max} / {report.ring_bound_lines}"),
        ("largest ring (chars / bound)", f"{report.ring_chars_max} / {report.ring_bound_chars}"),
        ("processes seen", str(report.descendants)),
        ("orphans after stop", str(len(report.orphans))),
    ]
    return out


@contextlib.contextmanager
def scratch_postgres() -> Iterator[None]:
    """A database of its own on the local server (127.0.0.1:5432, user postgres), dropped after;
    the test project uses it when DJPROJECT_PG names it."""
    import psycopg

    name = f"prodserver_chaos_{os.getpid()}"
    admin = {"host": "127.0.0.1", "user": "postgres", "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DJPROJECT_PG"] = name
    try:
        yield
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="of faults (default 60)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--rate", type=float, default=10.0, help="tasks enqueued per second")
    p.add_argument("--task-seconds", type=float, default=0.2, help="each task sleeps this long")
    p.add_argument("--postgres", action="store_true", help="a scratch PostgreSQL database")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = p.parse_args(argv)
    books = harness.Report("chaos")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    database = scratch_postgres() if args.postgres else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="prodserver-chaos-") as tmp, database:
        project = prepare(Path(tmp))
        report = run(project, args.seconds, seed, args.rate, args.task_seconds)
    where = "PostgreSQL" if args.postgres else "SQLite"
    table = books.table(
        f"Chaos, {args.seconds:.0f} s on {where}",
        [Column("what", "measurement"), Column("value", "value", right=True)],
    )
    for what, value in rows(report):
        table.add(what=what, value=value)
    table.notes += report.errors + report.late + [f"orphan: {o}" for o in report.orphans]
    t = tally(report)
    ok = not (t.duplicated or t.lost or t.requeued_from_live or report.errors or report.late)
    ok = ok and not report.orphans and report.web_answers and report.stopped_cleanly
    print("fault log:", *report.fault_log, sep="\n  ", file=sys.stderr)
    if not ok:
        books.failed.append("duplicates, losses, errors, late retries or orphans (see above)")
    return books.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
