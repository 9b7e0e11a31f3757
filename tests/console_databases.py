"""Run by test_one_database in a fresh process (Django settings load once per process): the
console on a test project and its worker entry, which the test gave a database of its own
(settings of its own in ARGS, or DATABASE_URL in its ENV).

Waits for the worker's report of its database and for two statistics polls after it (so a
check ran with it in hand), then prints one JSON object: the worker's report line, the
findings (lines), the worker pane's banner and the banner under the header.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from helpers import until
from textual.widgets import Static

from backends.dbident import MARK
from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries


def text(widget: Static) -> str:
    return str(widget.content) if widget.display else ""


async def main(project_dir: Path) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project, ["worker"]), watchdog=False, stats_every=0.2, project=project)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    seen: dict[str, object] = {}

    def report() -> str | None:
        lines = sup["worker"].ring.since(0)
        return next((line.text for line in lines if MARK in line.text), None)

    try:
        async with app.run_test(size=(200, 40)) as pilot:
            await until(lambda: report() is not None, timeout=30, what="the worker's report")
            for _ in range(2):  # the poll under way may have begun before the report came
                polled = sup.stats
                await until(lambda p=polled: sup.stats is not p, timeout=10, what="a poll")
            await until(lambda: sup.setup_checked, timeout=30, what="the setup checks")
            await pilot.pause(0.2)
            seen["report"] = report()
            seen["findings"] = [f.line() for f in sup.findings]
            pane = app.panes[0]
            seen["pane"] = text(pane.query_one(".findings", Static))
            seen["banner"] = text(app.query_one("#findings", Static))
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
