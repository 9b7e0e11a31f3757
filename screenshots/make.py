"""Regenerate the README's screenshots from the real demo: `python screenshots/make.py`.

Runs the bundled demo (gunicorn, two task workers, the load generator) in the console at a
large size and at 80x24, waits until tasks flow, and saves SVGs of what a user sees: every
pane, a zoomed log, the task panel, the scale dialog and the small-terminal layout.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tui import demo  # noqa: E402
from tui.app import ConsoleApp  # noqa: E402
from tui.engine.local import LocalEngine  # noqa: E402
from tui.engine.supervisor import Supervisor  # noqa: E402
from tui.project import discover, entries  # noqa: E402

SHOTS: list[tuple[str, tuple[int, int], list[str]]] = [
    ("console.svg", (160, 48), []),
    ("zoomed-log.svg", (160, 48), ["2", "z"]),
    ("task-panel.svg", (160, 48), ["2", "t"]),
    ("scale-dialog.svg", (160, 48), ["2", "S"]),
    ("console-80x24.svg", (80, 24), ["2"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def shoot(name: str, size: tuple[int, int], keys: list[str]) -> None:
    project = discover(demo.SETTINGS_MODULE, [], Path.cwd())
    sup = Supervisor(entries(project))
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="demo-host")
    try:
        async with app.run_test(size=size) as pilot:
            await asyncio.sleep(15)  # web ready, tasks flowing, sparklines filling
            await pilot.press(*keys)
            await asyncio.sleep(2.5)
            app.save_screenshot(str(HERE / name))
            print(f"saved screenshots/{name}")
    finally:
        sup.kill_all()
        await sup.stop_all()


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        os.environ["PRODSERVER_TUI_DEMO_DIR"] = data
        os.environ["PRODSERVER_TUI_DEMO_PORT"] = str(free_port())
        demo.prepare()
        for name, size, keys in SHOTS:
            asyncio.run(shoot(name, size, keys))


if __name__ == "__main__":
    main()
