"""The screen under pressure: layout after resizes behind dialogs, and what a narrow line keeps."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import enqueue, gunicorn, run_json, until
from rich.text import Text
from scene import scene
from textual.app import App, ComposeResult
from textual.command import CommandPalette
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.widgets.dialogs import ConfirmScreen, FindingsScreen, HelpScreen, ScaleScreen
from tui.widgets.pane import show
from tui.widgets.taskpanel import TaskPanel

SMALL, BIG = (80, 24), (160, 48)
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def layout(app: ConsoleApp) -> dict[str, Region]:
    """Where the main screen puts the process list and each pane (empty when hidden)."""
    widgets = [app.process_list, *app.panes]
    return {str(w.id): w.region if w.display else Region() for w in widgets}


async def open_scale_then_confirm(pilot: Pilot[Any]) -> None:
    """A knob that needs a restart (gunicorn threads) asks first: a dialog over a dialog."""
    await pilot.press("1", "S")
    pilot.app.screen.query_one("#knob-threads", Input).value = "3"
    await pilot.press("enter")


async def open_deploy_check(pilot: Pilot[Any]) -> None:
    """``D`` runs the checks in a process of the project (here one that cannot start)."""
    await pilot.press("D")
    await until(lambda: isinstance(pilot.app.screen, FindingsScreen), what="the findings")


def keys(*pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def press(pilot: Pilot[Any]) -> None:
        await pilot.press(*pressed)

    return press


OPENERS = {
    "task panel": (keys("t"), TaskPanel),
    "scale": (keys("1", "S"), ScaleScreen),
    "confirm": (open_scale_then_confirm, ConfirmScreen),
    "help": (keys("question_mark"), HelpScreen),
    "deploy check": (open_deploy_check, FindingsScreen),
    "palette": (keys("ctrl+p"), CommandPalette),
}


@pytest.mark.parametrize("opened", OPENERS)
async def test_layout_follows_resizes_made_while_a_dialog_is_open(opened: str) -> None:
    opener, kind = OPENERS[opened]
    app = scene()
    web = app.engine.supervisor["web"].entry.backend
    assert web is not None
    app.engine.supervisor.project = web.project  # its folder does not exist here: the check fails
    async with app.run_test(size=SMALL) as pilot:
        expected: dict[tuple[int, int], dict[str, Region]] = {}
        for size in (SMALL, BIG, SMALL):  # what each size looks like with nothing on top
            await pilot.resize_terminal(*size)
            await pilot.pause()
            expected[size] = layout(app)
        assert expected[SMALL] != expected[BIG]
        for size in (BIG, SMALL):  # both directions, each resize made behind the dialog
            await opener(pilot)
            assert isinstance(app.screen, kind)
            await pilot.resize_terminal(*size)
            await pilot.pause()
            while app.screen is not app.default_screen:
                await pilot.press("escape")
            await until(lambda s=size: layout(app) == expected[s], what=f"the {size} layout")


def test_task_panel_opens_on_the_failures_with_a_readable_traceback(djproject: Path) -> None:
    """At 80x24, over real failed tasks: Down moves the selection at once, and the chosen
    failure's whole message and the line that raised are on the screen."""
    messages = [
        f"card {i} declined by the payment provider: no funds on account 4{i}" for i in range(8)
    ]
    enqueue(djproject, "\n".join(f"tasks.fail.enqueue({m!r})" for m in messages))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [sys.executable, str(TESTS / "console_failures.py"), str(djproject), str(len(messages))]
    seen = run_json(argv, djproject, env, timeout=120)
    assert seen["focused"] == "failures"
    assert seen["after_down"] == seen["first_row"] + 1
    rows = [row.strip().strip("│").strip() for row in seen["screen"].splitlines()]
    assert seen["chosen"] in " ".join(rows), seen["screen"]  # whole, even when wrapped
    assert "raise ValueError(message)" in seen["screen"], seen["screen"]


async def test_a_crashed_web_pane_keeps_its_restarts_and_exit_when_narrow(djproject: Path) -> None:
    """A real gunicorn master killed with SIGKILL comes back: at 80 and 60 columns its title
    still says ``↻1`` and ``last signal 9``; the URL, pid and uptime give way first."""
    web, port = gunicorn(djproject, workers=1)
    sup = Supervisor([web], watchdog=False)
    app = ConsoleApp(LocalEngine(sup, "test.settings"), host="testhost")
    try:
        async with app.run_test(size=BIG) as pilot:
            child = sup["web"]
            await until(lambda: child.ready_after is not None, timeout=30, what="gunicorn ready")
            first = child.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            await until(
                lambda: child.pid not in (None, first) and child.healthy and child.restarts == 1,
                timeout=30,
                what="gunicorn back after the kill",
            )
            pane = app.panes[0]
            title = pane.query_one(".title", Static)
            await until(lambda: f"127.0.0.1:{port}" in str(title.content), what="the wide title")
            for size in (SMALL, (60, 20)):
                await pilot.resize_terminal(*size)
                await until(
                    lambda s=size: pane.content_size.width < s[0] and pane.width < s[0],  # type: ignore[misc]
                    what=f"the pane at {size}",
                )
                await until(lambda: title.content == pane.title_text(), what="the title refit")
                shown = str(title.content)
                assert "↻1" in shown and "last signal 9" in shown, (size, shown)
                assert shown.index("↻1") < shown.index("last signal 9")  # in their own order
                assert f"127.0.0.1:{port}" not in shown, (size, shown)  # it gave way
    finally:
        sup.kill_all()
        await sup.stop_all()


async def test_a_line_that_stops_wrapping_gives_its_row_back() -> None:
    """A stats line fitted for a wide pane can be laid out once at the narrow width before
    it is refitted (a resize from 160x48 to 80x24 does that): it wraps to two rows. Refitted,
    it must take one row again at once, not leave a blank row above the sparkline until some
    unrelated relayout, which an idle console never does (seen in tmux)."""

    class Line(App[None]):
        def compose(self) -> ComposeResult:
            yield Static(Text("wide " * 10), markup=False)

    app = Line()
    async with app.run_test(size=(20, 10)) as pilot:
        line = app.query_one(Static)
        await until(lambda: line.size.height == 3, what="the wide line wrapped")
        await pilot.pause(0.3)  # settled: nothing else lays the screen out any more
        show(line, Text("narrow"))
        await pilot.pause()
        await until(lambda: line.size.height == 1, timeout=2, what="one row again")
