"""Scaling converges on real servers: lost signals, quick presses, restarts, reaped pids.

The console compares what was asked for with what the process tree has and corrects one step
at a time (tui/engine/scaling.py). These tests make the ways a counted signal goes wrong happen for
real: a SIGSTOP landing between the console's look and its signal (SIGCONT then discards the
pending TTIN), a restart between asking and acting, a main process reaped before its exit was
processed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from conftest import Console
from helpers import WORKER, entry, gunicorn, until

from tui.engine.child import Child, State
from tui.engine.output import Line
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
SCALING = {signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2}


def children(child: Child) -> int:
    """Live child processes of the entry's main process: gunicorn's workers, our worker's."""
    try:
        found = psutil.Process(child.pid or 0).children()
    except psutil.NoSuchProcess:
        return -1
    return sum(_alive(p) for p in found)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_stopped(pid: int) -> None:
    """Blocking: until the kernel has really stopped it (a SIGSTOP in flight is not enough)."""
    deadline = time.monotonic() + 5
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED:
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.005)


def stop_at_first_signal(monkeypatch: pytest.MonkeyPatch, pid: int) -> threading.Event:
    """A SIGSTOP that lands between the console's look and its signal, a window no sender can
    see, made to happen every time: just before the first scaling signal to ``pid``, the
    process is stopped (for sure); a second later it is continued, which discards the TTIN /
    TTOU still pending (POSIX). The signals themselves are real and really sent."""
    real_kill = os.kill
    fired = threading.Event()

    def kill(target: int, sig: int) -> None:
        if target == pid and sig in SCALING and not fired.is_set():
            fired.set()
            real_kill(pid, signal.SIGSTOP)
            wait_stopped(pid)
            real_kill(target, sig)
            threading.Timer(1.0, real_kill, (pid, signal.SIGCONT)).start()
            return
        real_kill(target, sig)

    monkeypatch.setattr(os, "kill", kill)
    return fired


async def running_with(child: Child, workers: int) -> None:
    await until(lambda: child.state is State.RUNNING, timeout=30, what="running")
    await until(lambda: children(child) == workers, timeout=30, what=f"{workers} children")


async def stays(child: Child, workers: int) -> None:
    """Reached, and still there a moment later: no step left over, none lost."""
    await until(lambda: children(child) == workers, timeout=30, what=f"{workers} children")
    await asyncio.sleep(1.5)
    assert children(child) == workers


async def test_a_ttin_discarded_by_sigcont_is_sent_again(
    supervise: Supervise, djproject: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web, _port = gunicorn(djproject, workers=2)
    sup = await supervise(web)
    child = sup["web"]
    await running_with(child, 2)
    fired = stop_at_first_signal(monkeypatch, child.pid or 0)
    assert await sup.scale("web", "workers", 4)
    assert fired.is_set()
    await stays(child, 4)


async def test_a_scale_asked_while_a_restart_launches_reaches_the_new_process(
    supervise: Supervise, djproject: Path
) -> None:
    """The restart built its command line before the scale was asked, so the new process
    starts with 2 workers; the scale must be planned against it, not declared done."""
    web, _port = gunicorn(djproject, workers=2)
    sup = await supervise(web)
    child = sup["web"]
    await running_with(child, 2)
    first = child.pid
    asked: list[asyncio.Future[bool]] = []

    class AskOnLaunch:
        def on_lines(self, _child: Child, lines: list[Line]) -> None:
            if not asked and any(line.text.startswith("-- command:") for line in lines):
                # as the console does: the scale runs in a task started at once
                asked.append(asyncio.ensure_future(sup.scale("web", "workers", 4)))

        def on_state(self, _child: Child) -> None:
            pass

    sup.subscribe(AskOnLaunch())
    await sup.restart("web")
    assert asked and await asked[0]
    assert child.pid != first
    await stays(child, 4)


async def test_a_reaped_main_process_is_not_an_exception(
    supervise: Supervise, djproject: Path
) -> None:
    """asyncio's child watcher reaps in a thread: for a moment the pid is gone while the entry
    still names it. A scale then must not raise ProcessLookupError (in the console that was
    an exception out of a worker, which ends the app)."""
    web, _port = gunicorn(djproject, workers=1)
    sup = await supervise(web)
    child = sup["web"]
    await running_with(child, 1)
    pid = child.pid or 0
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2  # blocking on purpose: the loop must not see the exit yet
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if psutil.pid_exists(pid):  # a watcher that reaps on the loop: reap it as a thread would
        os.waitpid(pid, 0)
    assert child.pid == pid and child.state is State.RUNNING
    assert await sup.scale("web", "workers", 2)  # resolves, raises nothing
    await until(lambda: child.pid not in (None, pid), timeout=30, what="restarted")
    await stays(child, 2)  # the new process started with the new value


async def test_the_task_worker_gets_absolute_targets(
    supervise: Supervise, djproject: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked while the master is stopped, and again: 3 processes of 4 threads, exactly. A
    counted TTIN would be lost to the stop (made to happen at the first signal, if any)."""
    worker = entry(djproject, "worker", WORKER, {"interval": "0.1"})
    sup = await supervise(worker)
    child = sup["worker"]
    await running_with(child, 1)
    master = psutil.Process(child.pid or 0)
    stop_at_first_signal(monkeypatch, master.pid)
    master.suspend()
    wait_stopped(master.pid)
    asked = [sup.scale("worker", "processes", 3), sup.scale("worker", "threads", 4)]
    await asyncio.sleep(1.0)  # asked while it cannot act
    master.resume()
    assert await asyncio.gather(*asked) == [True, True]
    again = [sup.scale("worker", "processes", 3), sup.scale("worker", "threads", 4)]
    assert await asyncio.gather(*again) == [True, True]  # repeats are harmless
    await stays(child, 3)

    def threads_each() -> list[int]:  # 4 task loops, main, control and wake-up
        return [p.num_threads() - 3 for p in master.children() if _alive(p)]

    await until(lambda: threads_each() == [4, 4, 4], timeout=30, what="4 threads each")
    views = {v.name: v.observed for v in child.scaler.views()}
    assert views == {"processes": 3, "threads": 4}


# -- in the console ------------------------------------------------------------------------


async def test_quick_presses_show_scaling_and_converge(console: Console, djproject: Path) -> None:
    """Four "+" while the master is stopped: the pane says "scaling 2→6" (observed→asked)
    while nothing can move, and it ends at exactly 6 once the master runs again."""
    web, _port = gunicorn(djproject, workers=2)
    app = console(web, stats_every=0)
    async with app.run_test(size=(160, 48)) as pilot:
        child = app.engine.supervisor["web"]
        await running_with(child, 2)
        master = psutil.Process(child.pid or 0)
        master.suspend()
        wait_stopped(master.pid)
        await pilot.press("plus", "plus", "plus", "plus")
        stats = lambda: str(app.current.stats_text())  # noqa: E731
        await until(lambda: "workers scaling 2→6" in stats(), what="scaling 2→6 shown")
        master.resume()
        await stays(child, 6)
        await until(lambda: "workers 6/2" in stats(), what="now / configured")
        assert "scaling" not in stats()
