"""How long ``prodserver-tui`` takes to leave nothing behind, for each way it can die.

The scenario is the one ``tests/test_own_death.py`` asserts on (its functions run here): the
test Django project with a task worker (1 process x 2 threads, GRACE 10 s) busy on a 1.5 s
task, a child whose grandchild left its group, and a child that ignores SIGTERM (GRACE 1 s),
in a real pty (tmux, 160x48). Once the task runs, every descendant pid is recorded and the
console dies; "gone" is the time from the death until the last of those pids (the console
included) has exited. Tasks are counted afterwards: finished (SUCCESSFUL), stuck (RUNNING,
reported by ``recovery.find_stuck``), other (anything else: requeued or lost); "busy" is the
start-up, from launch until the task ran. The last row gives the worker a 1 s grace and a
60 s task besides, so both tasks outlive it.

    .venv/bin/python bench/own_death.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_own_death as scenario
from helpers import enqueue

from bench.harness import Column, Report

PATHS = [(False, death) for death in scenario.DEATHS] + [(True, death) for death in scenario.DEATHS]


def one(template: Path, headless: bool, death: str, long_task: bool) -> tuple[float, float, dict]:
    """Seconds from start to death, seconds until all gone, and the tasks' outcomes."""
    with tempfile.TemporaryDirectory() as tmp:
        project = scenario.copy_project(template, Path(tmp))
        grace, busy = (1.0, 2) if long_task else (10.0, 1)
        if long_task:
            with scenario.pytest.MonkeyPatch.context() as mp:
                mp.setenv("DJPROJECT_DB", str(project.parent / "db.sqlite3"))
                enqueue(project, "tasks.sleep.enqueue(60)")
        started = time.monotonic()
        gone = scenario.die(project, headless, death, grace=grace, busy=busy)
        up = time.monotonic() - started - gone.seconds
        if gone.survivors:
            raise SystemExit(f"survivors: {scenario.described(gone.survivors)}")
        stuck = {uuid.UUID(t["id"]) for t in scenario.find_stuck(project)}
        counts = {"finished": 0, "stuck": 0, "other": 0}
        for task_id, status, _finished in gone.tasks:
            key = "finished" if status == "SUCCESSFUL" else "other"
            counts["stuck" if uuid.UUID(task_id) in stuck else key] += 1
        return up, gone.seconds, counts


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--rounds", type=int, default=3)
    args.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    options = args.parse_args()
    report = Report("own_death")
    table = report.table(
        f"Seconds until nothing is left, median of {options.rounds}",
        [
            Column("path", "how it died"),
            Column("busy", "busy s", "{:.2f}", right=True),
            Column("gone", "gone s (median)", "{:.2f}", right=True),
            Column("worst", "gone s (max)", "{:.2f}", right=True),
            Column("finished", "finished", right=True),
            Column("stuck", "stuck", right=True),
            Column("other", "other", right=True),
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        template = scenario.make_template(Path(tmp))
        for headless, death, long_task in [(*p, False) for p in PATHS] + [(False, "SIGKILL", True)]:
            runs = [one(template, headless, death, long_task) for _ in range(options.rounds)]
            gone = [r[1] for r in runs]
            name = f"{'headless' if headless else 'console'} {death}"
            name += ", task > grace" if long_task else ""
            total = {k: sum(r[2][k] for r in runs) for k in ("finished", "stuck", "other")}
            table.add(
                path=name,
                busy=statistics.median(r[0] for r in runs),
                gone=statistics.median(gone),
                worst=max(gone),
                **total,
            )
    return report.finish(options.json)


if __name__ == "__main__":
    sys.exit(main())
