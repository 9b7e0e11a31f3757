"""Run by test_diagnostics in the project's own process: the runtime checks, fault by fault.

A real supervisor runs the project's task worker; faults are injected one after the other
(the worker frozen with SIGSTOP while tasks pile up, a burst of failing tasks, a task left
RUNNING by a dead pid, tasks in a queue no worker serves) and the findings the supervisor
publishes are recorded at each step. Thresholds are small so the run is short. Prints one
JSON object: step -> finding lines.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from helpers import until

from backends.diagnostics import Finding
from backends.taskworker import ids
from tui.engine.child import State
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries


def enqueue(what: str, n: int, queue: str = "default") -> None:
    """Real ``.enqueue()`` calls, from a thread (the ORM is blocking). This script sets
    Django up for them: the console it runs does not (its statistics helper does)."""
    from django.db import connections

    from backends.django_setup import setup_once

    setup_once()
    from myapp import tasks

    task = getattr(tasks, what).using(queue_name=queue)
    for i in range(n):
        task.enqueue(i)
    connections.close_all()


def leave_running_for_dead_worker() -> None:
    """The trace a SIGKILLed worker leaves: its task RUNNING, its pid gone from this host."""
    from django.db import connections
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    row = DBTaskResult.objects.filter(queue_name="emails").order_by("enqueued_at").first()
    assert row is not None
    DBTaskResult.objects.filter(id=row.id).update(
        status="RUNNING", started_at=timezone.now(), worker_ids=[ids.make(dead.pid, 1)]
    )
    connections.close_all()


async def main(project_dir: Path) -> dict[str, object]:
    project = discover(None, [], project_dir)
    watch = dict(grow_for=2.0, wait_limit=4.0, unserved_for=1.0, stuck_every=0.5, spike_min=10)
    sup = Supervisor(
        entries(project, ["worker"]), watchdog=False, stats_every=0.3, project=project, watch=watch
    )
    seen: dict[str, object] = {}

    def has(code: str) -> Callable[[], bool]:
        return lambda: any(f.code == code for f in sup.findings)

    def lines(code: str) -> list[str]:
        return [f.line() for f in sup.findings if f.code == code]

    async def run(fn: Callable[..., None], *args: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    try:
        await sup.start_all()
        worker = sup["worker"]
        await until(lambda: worker.state is State.RUNNING, timeout=30, what="the worker")
        await until(lambda: sup.setup_checked and sup.stats is not None, timeout=30)
        await asyncio.sleep(1.0)  # a few polls, none of which may find anything
        seen["healthy"] = [f.line() for f in sup.findings]

        # Frozen worker: up as far as the console knows, taking nothing, the queue growing.
        assert worker.pid is not None
        frozen = [worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(True))]
        for pid in frozen:
            psutil.Process(pid).send_signal(signal.SIGSTOP)
        for _ in range(8):
            await run(enqueue, "hello", 2)
            await asyncio.sleep(0.4)
        await until(has("ready-growing"), timeout=20, what="ready-growing")
        seen["growing"] = lines("ready-growing")
        for pid in frozen:
            psutil.Process(pid).send_signal(signal.SIGCONT)
        await until(lambda: not has("ready-growing")(), timeout=20, what="growth cleared")

        await run(enqueue, "boom", 12)
        await until(has("tasks-failing"), timeout=30, what="tasks-failing")
        seen["failing"] = lines("tasks-failing")

        await run(enqueue, "hello", 3, "emails")
        await until(has("queue-unserved"), timeout=20, what="queue-unserved")
        seen["unserved"] = lines("queue-unserved")
        await until(has("tasks-waiting"), timeout=20, what="tasks-waiting")
        seen["waiting"] = lines("tasks-waiting")

        await run(leave_running_for_dead_worker)
        await until(has("tasks-stuck"), timeout=20, what="tasks-stuck")
        seen["stuck"] = lines("tasks-stuck")
        seen["codes"] = sorted({f.code for f in sup.findings})
        seen["findings_are_findings"] = all(isinstance(f, Finding) for f in sup.findings)
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
