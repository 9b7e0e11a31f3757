"""The screen under pressure: layout after resizes behind dialogs, and what a narrow line keeps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import until
from scene import scene
from textual.command import CommandPalette
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import ConsoleApp
from tui.widgets.dialogs import ConfirmScreen, FindingsScreen, HelpScreen, ScaleScreen
from tui.widgets.taskpanel import TaskPanel

SMALL, BIG = (80, 24), (160, 48)


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
    web = app.supervisor["web"].entry.backend
    assert web is not None
    app.supervisor.project = web.project  # its folder does not exist here: the check fails
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
