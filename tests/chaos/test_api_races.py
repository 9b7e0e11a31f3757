"""Supervisor API calls that race each other, as the chaos suite's concurrent calls (or a key
pressed twice) make them: one entry must never run two processes, and no call may raise.

Found while building the chaos suite: two overlapping restarts both spawned a process and the
second one raised AttributeError; a start racing a backoff retry spawned a second process too.
The extra process was unknown to the supervisor, so nothing stopped it: an orphan.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
from helpers import command, gunicorn, is_alive, until

from tui.engine.child import State
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
TAG = "chaos-race-sleeper"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(10**6)", TAG]


def sleepers() -> list[int]:
    """Our sleeper processes that are alive, whoever knows about them."""
    found = []
    for proc in psutil.Process().children():
        try:
            if TAG in proc.cmdline() and is_alive(proc.pid):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def test_overlapping_restarts_and_starts_run_one_process(supervise: Supervise) -> None:
    sup = await supervise(command("sleeper", SLEEPER))
    child = sup["sleeper"]
    await until(lambda: child.state is State.RUNNING, what="running")

    await asyncio.gather(sup.restart("sleeper"), sup.restart("sleeper"))
    await until(lambda: child.state is State.RUNNING, what="running after two restarts")
    assert sleepers() == [child.pid]

    await sup.stop("sleeper")
    await asyncio.gather(sup.start("sleeper"), sup.start("sleeper"))
    await until(lambda: child.state is State.RUNNING, what="running after two starts")
    assert sleepers() == [child.pid]

    await sup.stop_all()
    assert sleepers() == []


async def test_a_start_racing_the_backoff_retry_runs_one_process(supervise: Supervise) -> None:
    sup = await supervise(command("sleeper", SLEEPER))
    child = sup["sleeper"]
    await until(lambda: child.state is State.RUNNING, what="running")
    psutil.Process(child.pid).kill()
    await until(lambda: child.state is State.BACKOFF, what="backoff")

    child._retry()  # the backoff timer fires (its callback, called at the chosen moment) ...
    await sup.start("sleeper")  # ... while the user starts it by hand in the same instant
    await until(lambda: child.state is State.RUNNING, what="running")
    await asyncio.sleep(0.5)  # the retry, had it been let through, has spawned by now
    assert sleepers() == [child.pid]

    await sup.stop_all()
    assert sleepers() == []


async def test_a_scale_sent_while_the_server_is_suspended_is_not_lost(
    supervise: Supervise, djproject: Path
) -> None:
    """The chaos suite found gunicorn one worker over: its TTOU had reached a SIGSTOPped master,
    and SIGCONT discards a pending TTIN / TTOU. The console now waits for the master to run."""
    web, _port = gunicorn(djproject, workers=2)
    sup = await supervise(web)
    child = sup["web"]
    master = psutil.Process(child.pid or 0)

    def workers() -> int:
        return len(master.children())

    await until(lambda: child.state is State.RUNNING and workers() == 2, timeout=30, what="2")
    master.suspend()
    # Stopped for sure first: a TTIN sent while the SIGSTOP is still in flight is pending when
    # SIGCONT comes and is discarded all the same; no sender can see that window.
    await until(lambda: master.status() == psutil.STATUS_STOPPED, what="the master stopped")
    scaled = asyncio.ensure_future(sup.scale("web", "workers", 3))
    await asyncio.sleep(1.0)  # the scale is under way while the master is stopped
    master.resume()
    assert await scaled
    await until(lambda: workers() == 3, timeout=30, what="3 workers")
    await asyncio.sleep(2.0)  # and stays there: no second TTIN, no lost one
    assert workers() == 3
