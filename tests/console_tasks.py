"""Run by test_console in its own process: the console with a real project's Django settings.

Django settings load once per process, so the console's view of a task worker (statistics,
task panel) is exercised the way a user runs it: from the project folder, in a fresh process.
Prints one JSON object with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import psutil
from helpers import until

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries
from tui.widgets.taskpanel import TaskPanel


async def main(project_dir: Path) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project, ["worker"]), watchdog=False, stats_every=0.5)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    seen: dict[str, object] = {}

    def threads() -> int:
        pid = sup["worker"].pid
        children = psutil.Process(pid).children() if pid else []
        return children[0].num_threads() if children else -1

    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: threads() >= 3, timeout=20, what="the worker process")
            seen["threads_before"] = threads()
            await pilot.press("plus", "plus")
            await until(lambda: threads() == seen["threads_before"] + 2, timeout=20)  # type: ignore[operator]
            seen["threads_after"] = threads()
            await until(lambda: sup.stats is not None and not sup.stats.error, timeout=20)
            await until(lambda: sup["worker"].tasks is not None, timeout=20)
            # "threads scaling 2→3" until the master has reported the new count
            stats = lambda: str(app.current.stats_text())  # noqa: E731
            await until(lambda: "scaling" not in stats(), timeout=20, what="scaling done")
            seen["stats_line"] = stats()
            await pilot.press("t")
            seen["panel"] = isinstance(app.screen, TaskPanel)
            await pilot.pause(0.5)
            queues = app.screen.query_one("#queues")
            seen["queue_row"] = [str(cell) for cell in queues.get_row_at(0)]  # type: ignore[attr-defined]
            await pilot.press("escape")
            seen["panel_closed"] = not isinstance(app.screen, TaskPanel)
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
