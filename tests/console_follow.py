"""Whether every log on screen follows; run alone, the task panel scenario of test_follow.

The task panel needs a task worker and the project's Django settings, which load once per
process: like ``console_tasks``, the scenario runs in a fresh process from the test project,
with a real task worker and chatty children, and prints one JSON object with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from conftest import fixture_argv
from helpers import command, until

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import discover, entries
from tui.widgets.logview import LogView, plain
from tui.widgets.pane import ProcessPane
from tui.widgets.taskpanel import TaskPanel


def bottom_row(log: LogView) -> str:
    """The lowest row the log draws text in, as the terminal receives it, without the gutter
    (a log shorter than its pane has blank rows below its newest line)."""
    rows = range(log.scrollable_content_region.height - 1, -1, -1)
    drawn = ("".join(segment.text for segment in log.render_line(y)) for y in rows)
    return next((row[2:].rstrip() for row in drawn if row.strip()), "")


def follows(pane: ProcessPane) -> bool:
    """The pane's log follows: its lowest row shows the newest line it has taken from the
    ring, or one that came after it, and its title counts no new lines below the view."""
    log = pane.log_view
    newest = [plain(line.text) for line in log.ring.since(log._next - 1)]
    bottom = bottom_row(log)
    cut = len(bottom) >= log.scrollable_content_region.width - 2  # a line wider than the pane
    shown = any(text == bottom or (cut and text.startswith(bottom)) for text in newest)
    return log.follow and shown and "new (End)" not in str(pane.title_text())


def seen(pane: ProcessPane) -> str:
    log = pane.log_view
    newest = [line.text for line in log.ring.since(log._next - 1)]
    return (
        f"{pane.child.name}: follow={log.follow} bottom={bottom_row(log)!r} "
        f"newest={newest!r} title={str(pane.title_text())!r}"
    )


async def all_follow(app: ConsoleApp, what: str) -> None:
    """Every pane on screen follows, within a few seconds (a log syncs ten times a second)."""
    shown = [p for p in app.panes if p.display and p.region.height]
    assert shown, what
    try:
        await until(lambda: all(map(follows, shown)), timeout=5)
    except AssertionError:
        details = "\n".join(map(seen, shown))
        raise AssertionError(f"not every log follows {what}:\n{details}") from None


async def task_panel(project_dir: Path) -> dict[str, str]:
    """Open and close the task panel, at two sizes and with a resize while it is open; after
    each, what did not follow (nothing, when all is well)."""
    project = discover(None, [], project_dir)
    chatty = [command(name, fixture_argv("chatty", "50")) for name in ("a", "b", "c")]
    sup = Supervisor([*entries(project, ["worker"]), *chatty], watchdog=False, stats_every=0.5)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    failed: dict[str, str] = {}
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            for child in chatty:
                ring = sup[child.name].ring
                await until(lambda r=ring: r.next_seq > 100, timeout=20)  # type: ignore[misc]
            steps: list[tuple[str, tuple[int, int], tuple[int, int] | None]] = [
                ("160x48", (160, 48), None),
                ("80x24", (80, 24), None),
                ("grown while open", (80, 24), (160, 48)),
                ("shrunk while open", (160, 60), (120, 40)),
            ]
            for what, size, while_open in steps:
                await pilot.resize_terminal(*size)
                await pilot.press("t")
                await until(lambda: isinstance(app.screen, TaskPanel), what="the panel")
                if while_open:
                    await pilot.resize_terminal(*while_open)
                await pilot.press("escape")
                await until(lambda: not isinstance(app.screen, TaskPanel), what="closed")
                try:
                    await all_follow(app, f"after the task panel ({what})")
                except AssertionError as e:
                    failed[what] = str(e)
    finally:
        sup.kill_all()
        await sup.stop_all()
    return failed


if __name__ == "__main__":
    print(json.dumps(asyncio.run(task_panel(Path(sys.argv[1])))))
