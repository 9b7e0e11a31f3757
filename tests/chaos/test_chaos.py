"""The chaos suite, short version: faults under load, then nothing lost, doubled or left behind.

The scenario (``scenario.py``, also behind ``bench/chaos.py``) runs in a fresh process that
becomes the supervising process, so its memory is measured alone; this test judges its report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import POSTGRES
from helpers import run_json

from chaos.scenario import TESTS, Report, tally

CHAOS_SECONDS = 20
MAX_RSS = 200 * 1024 * 1024


@pytest.mark.timeout(180)
@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
def test_chaos_loses_nothing_runs_nothing_twice_and_leaves_nothing(djproject: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    data = run_json(
        [
            sys.executable,
            "-m",
            "chaos.scenario",
            str(djproject),
            "--seconds",
            str(CHAOS_SECONDS),
            "--seed",
            str(seed),
        ],
        cwd=TESTS,
        env=dict(os.environ),
        timeout=170,
    )
    report = Report(**data)
    log = "\n".join(report.fault_log)
    tails = "\n".join(f"{n}: {line}" for n, lines in report.tails.items() for line in lines)
    why = f"seed {seed}; faults:\n{log}\nlast lines:\n{tails}"
    counts = tally(report)

    assert report.errors == [], why
    assert sum(report.faults.values()) >= CHAOS_SECONDS // 2, why  # the chaos really happened
    assert report.killed, why
    assert counts.enqueued > 50, why
    assert counts.finished == counts.enqueued, (counts, why)
    assert counts.lost == 0, (counts, why)
    assert counts.duplicated == 0, (counts, why)
    assert counts.requeued_from_live == 0, (counts, why)
    assert len(report.status) == counts.enqueued  # the database holds exactly what was enqueued
    assert report.stuck_at_end == 0, why  # the masters recovered every stuck task themselves
    assert report.requeued >= counts.reruns_after_kill, why

    assert report.late == [], why  # every retry came when its backoff said
    assert all(s == "running" for n, s in report.states_at_end.items() if n != "load"), why
    assert report.processes_at_end == {"web": 2, "tasks1": 2, "tasks2": 2, "load": 0}, why
    assert report.web_answers, why
    assert report.stopped_cleanly, why
    assert report.descendants > 10
    assert report.orphans == [], why

    assert report.rss_max < MAX_RSS, why
    assert report.ring_lines_max <= report.ring_bound_lines
    assert report.ring_chars_max <= report.ring_bound_chars
