"""Run by test_stats_helper in its own process: the console (the real app, headless) on the
test project, whose apps note every process that loads them (DJPROJECT_READY_LOG).

It waits for the statistics and the task panel's traceback, which only a process with the
project's apps can read; kills the statistics helper and waits for a new one and fresh
statistics; then stops. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psutil
from helpers import enqueue, until, wait_gone
from textual.widgets import Static

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries


def helper_pids() -> list[int]:
    """This process's statistics helpers, as the system lists them (not as the console says)."""
    return [
        p.pid
        for p in psutil.Process().children()
        if "tui.engine.stats_helper" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    ]


async def main(project_dir: Path) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project, ["worker"]), stats_every=0.3, project=project)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    seen: dict[str, object] = {"console": os.getpid()}
    helpers: list[int] = []

    def ready(n: int) -> bool:
        stats = sup.stats
        return stats is not None and not stats.error and sum(q.ready for q in stats.queues) == n

    def note_helpers() -> list[int]:
        found = helper_pids()
        helpers.extend(pid for pid in found if pid not in helpers)
        return found

    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: ready(0), timeout=30, what="the first statistics")
            note_helpers()
            # Updates: tasks on a queue the worker does not serve stay ready, and are counted.
            other = "tasks.noop.using(queue_name='other').enqueue()\n"
            await asyncio.to_thread(enqueue, project_dir, other * 2)
            await until(lambda: ready(2), timeout=30, what="two ready tasks")
            await asyncio.to_thread(enqueue, project_dir, "tasks.fail.enqueue('boom-1234')")
            await until(lambda: bool(sup.stats and sup.stats.failures), timeout=30)
            await pilot.press("t")
            shown = app.screen.query_one("#traceback Static", Static)
            await until(lambda: "boom-1234" in str(shown.content), timeout=30, what="traceback")
            seen["traceback"] = "ValueError: boom-1234" in str(shown.content)
            await pilot.press("escape")

            [first] = note_helpers() or [None]
            assert first is not None, "no statistics helper among the console's children"
            os.kill(first, signal.SIGKILL)
            await until(lambda: bool(sup.stats and sup.stats.error), timeout=30, what="the error")
            seen["error"] = sup.stats.error if sup.stats else None
            await until(lambda: ready(2) and note_helpers() not in ([], [first]), timeout=30)
            seen["restarted"] = len(helpers) == 2 and ready(2)
    except AssertionError as e:  # what it saw so far still goes out: the test says what failed
        seen["failed"] = str(e)
    finally:
        note_helpers()
        sup.kill_all()
        await sup.stop_all()
    seen["helpers"] = helpers
    seen["helpers_left"] = wait_gone(helpers, timeout=5)
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
