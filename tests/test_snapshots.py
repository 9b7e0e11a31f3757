"""What the console looks like, pinned: a plain SSH terminal and a big one, same scene."""

from __future__ import annotations

from typing import Any

import pytest
from scene import scene
from textual.widgets import Input


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_console(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(scene(), terminal_size=size)


def test_zoomed_log(snap_compare: Any) -> None:
    assert snap_compare(scene(), terminal_size=(120, 30), press=["2", "z"])


def test_scale_dialog(snap_compare: Any) -> None:
    async def steady_cursor(pilot: Any) -> None:  # a blinking cursor is a coin toss in a picture
        await pilot.press("2", "S")
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False

    assert snap_compare(scene(), terminal_size=(120, 30), run_before=steady_cursor)
