"""What one task statistics poll says, in types that load without Django, and their one
serialisation.

The console shows these, but the poll that fills them runs in the statistics helper (a child,
``tui/engine/stats_helper.py``), because reading them needs the project's app registry. The console
imports this module, not ``taskstats``: the ORM alone would add about 10 MB to it. `to_json`
and `from_json` are the only place these types become JSON and back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class QueueStats:
    """One line of the queue table.

    ``wait_*`` count from when a task became due (``run_after`` for a deferred one, else
    ``enqueued_at``): a task deferred by an hour did not wait an hour. Percentiles are ``None``
    when no task of the queue is among the last SAMPLE finished.
    """

    backend: str
    queue: str
    ready: int
    scheduled: int
    running: int
    succeeded_1m: int
    failed_1m: int
    succeeded_total: int
    failed_total: int
    throughput_10s: float
    throughput_60s: float
    wait_p50: float | None
    wait_p95: float | None
    run_p50: float | None
    run_p95: float | None


@dataclass(frozen=True)
class Failure:
    """A recent failure, recognisable in one line without opening its traceback."""

    id: str
    task_path: str
    queue: str
    exception: str
    message: str
    finished_at: datetime
    worker_id: str | None


@dataclass(frozen=True)
class WorkerCounts:
    """Per worker process on this host, so the console can show work next to each process."""

    running: int
    succeeded_1m: int
    failed_1m: int


@dataclass(frozen=True)
class Snapshot:
    """One poll. With ``error`` set everything else is empty: keep showing the last good one."""

    taken_at: datetime
    queues: list[QueueStats]
    failures: list[Failure]
    by_pid: dict[int, WorkerCounts]
    oldest_ready_wait: float | None
    error: str | None = None


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """JSON types only: datetimes as ISO text, the pid keys as a list of pairs."""
    data = asdict(snapshot)
    data["taken_at"] = snapshot.taken_at.isoformat()
    for failure in data["failures"]:
        failure["finished_at"] = failure["finished_at"].isoformat()
    data["by_pid"] = [[pid, asdict(counts)] for pid, counts in snapshot.by_pid.items()]
    return data


def from_json(data: dict[str, Any]) -> Snapshot:
    """The inverse of `to_json`; a missing or mistyped field raises (the caller says so)."""
    return Snapshot(
        taken_at=datetime.fromisoformat(data["taken_at"]),
        queues=[QueueStats(**queue) for queue in data["queues"]],
        failures=[
            Failure(**{**f, "finished_at": datetime.fromisoformat(f["finished_at"])})
            for f in data["failures"]
        ],
        by_pid={int(pid): WorkerCounts(**counts) for pid, counts in data["by_pid"]},
        oldest_ready_wait=data["oldest_ready_wait"],
        error=data["error"],
    )


def failed(error: str) -> Snapshot:
    """A poll that could not read anything: ``error`` says why."""
    return Snapshot(
        taken_at=datetime.now(UTC),
        queues=[],
        failures=[],
        by_pid={},
        oldest_ready_wait=None,
        error=error,
    )
