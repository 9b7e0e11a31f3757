"""Twenty processes in the real console, one flooding at full speed: still usable, still bounded.

``bench/load20.py`` runs the same mix (a flood, gunicorn, chatty talkers, sleepers) on a
real terminal and measures what this only checks: key latency, RSS, lines/s.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import fixture_argv
from helpers import command, gunicorn, until

from tui.app import ConsoleApp
from tui.engine.child import State
from tui.engine.local import LocalEngine
from tui.engine.output import Ring
from tui.engine.supervisor import Supervisor
from tui.project import Entry
from tui.widgets.dialogs import HelpScreen

# Enough lines that the flood's 80-byte lines hit the character bound (4,000,000) first:
# both bounds are then exercised, the one in lines by the chatty panes' history.
RING_LINES = 60_000
SLEEPER = [sys.executable, "-c", "import time; time.sleep(10**6)"]
CHATTY = 6


def twenty(djproject: Path) -> list[Entry]:
    """One flood, one gunicorn, six chatty talkers at 20 lines/s, twelve sleepers."""
    web, _port = gunicorn(djproject, workers=2)
    return [
        command("flood", fixture_argv("flood", str(10**12))),
        web,
        *(command(f"chatty{i}", fixture_argv("chatty", "20")) for i in range(1, CHATTY + 1)),
        *(command(f"sleep{i}", SLEEPER) for i in range(1, 13)),
    ]


def last_number(app: ConsoleApp, name: str) -> int:
    """The newest "out N" the pane of ``name`` shows on screen (-1 if none yet)."""
    pane = next(p for p in app.panes if p.child.name == name)
    found = re.findall(r"out (\d+)", pane.log_view.visible_text())
    return int(found[-1]) if found else -1


def ring_chars(ring: Ring) -> int:
    return sum(len(line.text) for line in ring.since(ring.first_seq))


def advanced(app: ConsoleApp, name: str, since: int) -> Callable[[], bool]:
    return lambda: last_number(app, name) > since + 10


async def test_twenty_processes_one_flooding_stay_responsive_and_bounded(
    djproject: Path,
) -> None:
    entries = twenty(djproject)
    assert len(entries) == 20
    sup = Supervisor(entries, watchdog=False, ring_lines=RING_LINES)
    app = ConsoleApp(LocalEngine(sup, "test.settings"), host="testhost")
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(
                lambda: all(c.state is State.RUNNING for c in sup.children.values()),
                timeout=60,
                what="all 20 running",
            )
            flood = sup["flood"].ring
            await until(lambda: flood.dropped > 0, timeout=60, what="the flood to fill its ring")

            for name in ("chatty1", f"chatty{CHATTY}"):  # both ends of the grid keep moving
                seen = last_number(app, name)
                await until(advanced(app, name, seen), timeout=30, what=f"{name} to update")

            for _ in range(3):
                await pilot.press("question_mark")
                await until(lambda: isinstance(app.screen, HelpScreen), timeout=15, what="help")
                await pilot.press("escape")
                await until(lambda: not isinstance(app.screen, HelpScreen), timeout=15)

            assert sup["flood"].state is State.RUNNING  # it flooded the whole time
            for child in sup.children.values():
                assert len(child.ring) <= RING_LINES
                assert ring_chars(child.ring) <= child.ring._max_chars
            assert len(flood) < RING_LINES  # the character bound is what held the flood
            assert sup["chatty1"].ring.dropped == 0  # a quiet pane keeps its history
    finally:
        sup.kill_all()
        await sup.stop_all()
