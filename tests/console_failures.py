"""Run by test_screen in its own process: the task panel at 80x24 over real failed tasks.

A real task worker of a real project runs tasks that raise; the panel opens on them. Prints
one JSON object with what the panel had focused, where Down moved, and the screen's text.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from helpers import until
from textual.widgets import DataTable

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries
from tui.widgets.taskpanel import TaskPanel


def screen_text(app: ConsoleApp) -> str:
    """The rows of the terminal as the user sees them."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def main(project_dir: Path, failures: int) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project, ["worker"]), watchdog=False, stats_every=0.5)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    seen: dict[str, object] = {}

    def failed() -> int:
        return len(sup.stats.failures) if sup.stats and not sup.stats.error else 0

    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(lambda: failed() == failures, timeout=60, what="the failed tasks")
            await pilot.press("t")
            assert isinstance(app.screen, TaskPanel)
            table = app.screen.query_one("#failures", DataTable)
            seen["focused"] = app.focused.id if app.focused else None
            seen["first_row"] = table.cursor_row
            await pilot.press("down")
            seen["after_down"] = table.cursor_row
            second = sup.stats.failures[1] if sup.stats else None
            assert second is not None
            seen["chosen"] = second.message
            await until(lambda: "raise ValueError" in screen_text(app), what="the traceback")
            await pilot.pause(0.3)
            seen["screen"] = screen_text(app)
            await pilot.press("escape")
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))))
