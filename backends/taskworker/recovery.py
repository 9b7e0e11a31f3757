"""Recover tasks that a dead worker process left RUNNING.

django-tasks-db has no heartbeat: a worker killed with SIGKILL (the OOM killer, a lost
container) leaves its task RUNNING for ever. Our worker ids carry host, pid, a scope (boot, pid
and time namespace) and the worker process's start (see `ids`), so where the same pids are
visible such a task is recognisable: its last worker's pid is dead, or names a process with
another start (the pid was reused). Tasks whose last worker id names another host, another
container or boot of this one, or is not in our format (db_worker's random ids, ids from
before scopes), are never touched: a shared database serves processes we cannot see.

No clock is read to decide. The start is in clock ticks since boot, which no step of the wall
clock moves; ``started_at`` is the wall clock at the claim, and comparing it with a process's
create time (boot time + ticks, the boot time itself derived from the wall clock) is off by
however far the clock was stepped between the claim and the look: a forward step of a few
seconds made a live worker whose claim followed its start closely look like a newer program,
and its task was requeued while it ran; no slack fixes that, as a step can be any size.
Recording the start in the id instead costs 13 characters of the 64 (the hostname gives them
up) and needs no table of our own. Looking needs no pidfd (only the watchdog, which signals,
holds one): one read of /proc/PID/stat describes one process.

Every write is a conditional UPDATE on ``status = RUNNING``, so a task that finished between
the look and the write is left alone; recover() also matches the ``started_at`` it saw, so a
task recovered by someone else and claimed again meanwhile is not taken from its new worker.
No UI imports here: the task worker's master uses this module too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus

from backends import procid
from backends.taskworker import ids

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django_tasks_db.models import DBTaskResult

logger = logging.getLogger("backends.taskworker")

POLICIES = ("requeue", "fail")

# Spelled out rather than derived from the class, so it stays importable under ``python -m``.
WORKER_DIED_PATH = "backends.taskworker.recovery.WorkerDied"


class WorkerDied(Exception):
    """Recorded as a FAILED task's exception class, so django's TaskError can resolve it."""


@dataclass(frozen=True)
class StuckTask:
    id: str
    task_path: str
    queue: str
    worker_id: str
    started_at: datetime
    reason: str


def _results(using: str) -> QuerySet[DBTaskResult]:
    # Imported late: the model needs the app registry, and importing this module must not.
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.using(using)


def _why_stuck(worker: ids.WorkerId) -> str | None:
    """Why the task ``worker`` claimed cannot be running any more, if so.

    Only a local id's pid means anything here. An id written before ids carried the start
    knows the pid alone: a live process with it counts as the worker, since a task left
    RUNNING is better than a task run twice. So does a process we may not inspect.
    """
    if not ids.is_local(worker):
        return None
    now = procid.stat(worker.pid)
    if now is None:
        return None if _exists(worker.pid) else f"pid {worker.pid} is gone"
    if worker.start is not None and now.start != worker.start:
        return f"pid {worker.pid} now belongs to another program"
    return f"pid {worker.pid} is gone" if now.zombie else None


def _exists(pid: int) -> bool:
    """Whether any process has ``pid``, even one /proc hides from us (``hidepid``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        pass
    return True


def find_stuck(using: str = "default", pids: Collection[int] | None = None) -> list[StuckTask]:
    """RUNNING tasks of this host whose worker process is dead or was replaced by another.

    ``pids`` narrows the search to tasks last claimed by those pids: the master passes the
    children it saw die. Only the *last* worker id counts, because earlier ones are the
    history of attempts that were already recovered.

    django-tasks-db indexes ``status`` for READY rows only, so unless the optional
    ``backends.taskworker`` app's (status, finished_at) index is migrated this scans the table:
    call it on events (start-up, a child's death), not in a tight loop.
    """
    host = ids.this_host()
    wanted = None if pids is None else frozenset(pids)
    rows = (
        _results(using)
        .filter(status=TaskResultStatus.RUNNING)
        .order_by("started_at", "id")
        .values_list("id", "task_path", "queue_name", "worker_ids", "started_at")
    )
    stuck = []
    for task_id, task_path, queue, worker_ids, started_at in rows:
        if not worker_ids or started_at is None:
            continue  # not claimed the way db_worker claims: nothing to reason from
        worker_id = str(worker_ids[-1])
        parsed = ids.parse(worker_id)
        if parsed is None or parsed.host != host:
            continue
        if wanted is not None and parsed.pid not in wanted:
            continue
        reason = _why_stuck(parsed)
        if reason is not None:
            stuck.append(StuckTask(str(task_id), task_path, queue, worker_id, started_at, reason))
    return stuck


def _requeue_fields() -> dict[str, Any]:
    # worker_ids stay: the dead worker's id in the history says who was running it.
    return {"status": TaskResultStatus.READY, "started_at": None}


def _failed_fields(reason: str) -> dict[str, Any]:
    traceback = (
        "The worker process died while running this task; it left no traceback.\n"
        f"WorkerDied: {reason}\n"
    )
    return {
        "status": TaskResultStatus.FAILED,
        "finished_at": timezone.now(),
        "exception_class_path": WORKER_DIED_PATH,
        "traceback": traceback,
    }


def requeue(ids: Collection[str], using: str = "default") -> int:
    """Put still-RUNNING tasks back to READY under the same id; how many changed.

    The same id keeps any caller's TaskResult handle valid. ``run_after`` is untouched: a
    claimed task's is already due (or the "not deferred" sentinel), so a worker picks it up.
    """
    if not ids:
        return 0
    return (
        _results(using)
        .filter(id__in=list(ids), status=TaskResultStatus.RUNNING)
        .update(**_requeue_fields())
    )


def mark_failed(ids: Collection[str], reason: str, using: str = "default") -> int:
    """Mark still-RUNNING tasks FAILED with a WorkerDied error; how many changed."""
    if not ids:
        return 0
    return (
        _results(using)
        .filter(id__in=list(ids), status=TaskResultStatus.RUNNING)
        .update(**_failed_fields(reason))
    )


def recover(
    policy: str, using: str = "default", pids: Collection[int] | None = None
) -> list[StuckTask]:
    """Find stuck tasks and requeue or fail them; the ones actually changed.

    Each write is also conditioned on the ``started_at`` that was seen, so a task that was
    recovered and claimed again by a live worker in the meantime is not yanked from it.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown recovery policy {policy!r}: choose 'requeue' or 'fail'")
    done = []
    for task in find_stuck(using, pids):
        fields = _requeue_fields() if policy == "requeue" else _failed_fields(task.reason)
        changed = (
            _results(using)
            .filter(id=task.id, status=TaskResultStatus.RUNNING, started_at=task.started_at)
            .update(**fields)
        )
        if changed:
            verb = "requeued" if policy == "requeue" else "failed"
            logger.warning("%s task %s (%s): %s", verb, task.id, task.task_path, task.reason)
            done.append(task)
    return done


def release_claims(worker_id: str, using: str = "default") -> int:
    """Put back to READY the tasks still RUNNING under ``worker_id``; how many changed.

    Only for a live worker thread that runs nothing: it calls this after a database outage,
    because a claim whose commit was cut off may have been written without the thread knowing.
    Such a task never started, so requeueing it cannot run it twice. Reads every RUNNING row
    (``status`` is not indexed outside READY): an outage is rare, the table's RUNNING rows few.
    """
    rows = _results(using).filter(status=TaskResultStatus.RUNNING).values_list("id", "worker_ids")
    mine = [task_id for task_id, workers in rows if workers and workers[-1] == worker_id]
    return requeue([str(task_id) for task_id in mine], using)
