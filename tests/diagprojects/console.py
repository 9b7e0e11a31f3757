"""Run by test_diagnostics in the project's own process: where the console shows findings.

Starts the console (Pilot) on the project in the given folder with the named entries, waits
for the setup checks, and reports the banner under the header, each pane's banner, and with
``--deploy`` what the "run check --deploy" palette command shows. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from helpers import until
from textual.widgets import Static

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries
from tui.widgets.dialogs import FindingsScreen


def text(widget: Static) -> str:
    return str(widget.content) if widget.display else ""


async def main(project_dir: Path, names: list[str], deploy: bool) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project, names), watchdog=False, stats_every=0.5, project=project)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    seen: dict[str, object] = {}
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: sup.setup_checked, timeout=30, what="the setup checks")
            await pilot.pause(0.3)
            seen["banner"] = text(app.query_one("#findings", Static))
            seen["panes"] = {
                pane.child.name: text(pane.query_one(".findings", Static)) for pane in app.panes
            }
            seen["header"] = str(app.header_text())
            if deploy:
                await pilot.press("ctrl+p")
                await pilot.press(*"check --deploy")
                await pilot.pause(0.5)
                await pilot.press("enter")
                await until(
                    lambda: isinstance(app.screen, FindingsScreen), timeout=60, what="the dialog"
                )
                await pilot.pause(0.3)
                dialog = app.screen
                seen["dialog"] = [str(s.content) for s in dialog.query(Static)]
                await pilot.press("escape")
                seen["dialog_closed"] = not isinstance(app.screen, FindingsScreen)
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("project", type=Path)
    cli.add_argument("names", nargs="+")
    cli.add_argument("--deploy", action="store_true")
    args = cli.parse_args()
    print(json.dumps(asyncio.run(main(args.project, args.names, args.deploy))))
