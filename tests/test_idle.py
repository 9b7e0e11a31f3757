"""An idle console does next to nothing: no redraws, no log pulls, sampling backs off.

These count what the console does (refreshes, log syncs, samples) over a few seconds of
idleness with real sleeping children; they assert no CPU figures (bench/ measures those).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from helpers import command, until
from textual.widget import Widget
from textual.widgets import Sparkline

from tui.app import ConsoleApp
from tui.engine.child import State
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import Entry
from tui.widgets.logview import LogView
from tui.widgets.pane import ProcessPane

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
IDLE_WINDOW = 3.0  # seconds watched; a tick a second would redraw each uptime three times


def sleepers(n: int) -> list[Entry]:
    return [command(f"idle{i}", SLEEPER) for i in range(1, n + 1)]


@pytest.fixture
async def supervisors() -> AsyncIterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(entries: list[Entry], **options: Any) -> Supervisor:
        sup = Supervisor(entries, watchdog=False, **options)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.kill_all()
        await sup.stop_all()


def counting(calls: list[object], method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a method to record each call on the instance; the method still runs."""

    def wrapper(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(self)
        return method(self, *args, **kwargs)

    return wrapper


async def test_idle_panes_neither_redraw_nor_pull_logs(
    supervisors: Callable[..., Supervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the first minute an uptime shows minutes: nothing on an idle pane changes for
    seconds, so nothing in it is refreshed, and no log view looks at its ring."""
    sup = supervisors(sleepers(3), idle_sample_every=2.0)
    shift = 0.0  # the console's clock runs ahead, so uptimes are past their first minute

    def clock() -> float:
        return time.time() + shift

    app = ConsoleApp(
        LocalEngine(sup, "test.settings"), clock=clock, host="testhost", info_every=0.2
    )
    refreshed: list[object] = []
    synced: list[object] = []
    monkeypatch.setattr(Widget, "refresh", counting(refreshed, Widget.refresh))
    monkeypatch.setattr(LogView, "sync", counting(synced, LogView.sync))
    async with app.run_test(size=(160, 48)):
        await until(lambda: all(c.state is State.RUNNING for c in sup.children.values()))
        await until(lambda: all(c.usage is not None for c in sup.children.values()))
        # Two minutes and ten seconds up: the next minute boundary is far off.
        started = max(c.started_at or 0.0 for c in sup.children.values())
        shift = 130 - (time.time() - started)
        await asyncio.sleep(1.0)  # the start-up lines are drawn, uptimes jump once
        refreshed.clear()
        synced.clear()
        await asyncio.sleep(IDLE_WINDOW)
        # Sparklines are left out: they scroll while their window holds any load (start-up).
        in_panes = [
            w
            for w in refreshed
            if isinstance(w, Widget)
            and not isinstance(w, Sparkline)
            and any(isinstance(a, ProcessPane) for a in w.ancestors)
        ]
        assert in_panes == [], f"idle panes refreshed: {in_panes}"
        assert synced == [], "log views pulled their rings with no output coming"

        # Output still shows at once: the line wakes the loop that pulls it.
        sup["idle2"].note("-- hello from the test")
        view = app.panes[1].log_view
        await until(lambda: view._next == sup["idle2"].ring.next_seq, what="the line pulled")
        assert synced, "the view was not synced for the new line"


async def test_sampling_backs_off_while_idle_and_returns_on_output(
    supervisors: Callable[..., Supervisor],
) -> None:
    """Idle, unchanged trees are sampled every ``idle_sample_every`` seconds at most; a line
    of output brings the next sample at once rather than at the end of that pause."""
    sup = supervisors(sleepers(2), sample_every=0.1, idle_sample_every=30.0)
    samples: list[float] = []
    sample = sup.sampler.sample

    def counted(roots: dict[str, int]) -> Any:
        samples.append(time.monotonic())
        return sample(roots)

    sup.sampler.sample = counted  # type: ignore[method-assign]
    await sup.start_all()
    await until(lambda: all(c.state is State.RUNNING for c in sup.children.values()))
    await until(lambda: all(c.usage is not None for c in sup.children.values()))
    await asyncio.sleep(2.0)  # backs off: 0.1, 0.2, 0.4, 0.8, 1.6 s...
    before = len(samples)
    await asyncio.sleep(IDLE_WINDOW)
    # At the normal pace this window would hold about 30 samples.
    assert len(samples) - before <= 3, f"{len(samples) - before} samples while idle"

    woken = len(samples)
    sup["idle1"].note("-- output")
    await until(lambda: len(samples) > woken, timeout=10.0, what="a sample after output")
