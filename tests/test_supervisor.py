"""The engine against real child processes: lifecycle, backoff, escalation, orphans, output."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import psutil
import pytest
from conftest import fixture_argv
from helpers import command, free_port, is_alive, tree, until, wait_gone

import tui.engine.child as child_module
from tui.engine.child import State
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]


def texts(sup: Supervisor, name: str, stream: str | None = None) -> list[str]:
    return [
        line.text for line in sup[name].ring.since(0) if stream is None or line.stream == stream
    ]


async def test_output_is_kept_per_stream_and_stop_leaves_nothing(supervise: Supervise) -> None:
    sup = await supervise(command("chatty", fixture_argv("chatty", "200")))
    child = sup["chatty"]
    await until(lambda: "err 3" in texts(sup, "chatty", "err"), what="stderr line")
    assert "out 1" in texts(sup, "chatty", "out")
    assert "err 3" not in texts(sup, "chatty", "out")
    pid = child.pid
    assert pid is not None
    await until(lambda: child.state is State.RUNNING, what="running")
    assert await sup.stop_all()
    assert child.state is State.STOPPED and child.pid is None
    assert not is_alive(pid)
    assert texts(sup, "chatty", "sys")[-1] == "-- stopped: killed by SIGTERM"


async def test_restart_changes_pid_and_counts(supervise: Supervise) -> None:
    sup = await supervise(command("chatty", fixture_argv("chatty")))
    first = sup["chatty"].pid
    await sup.restart("chatty")
    assert sup["chatty"].pid not in (None, first)
    assert sup["chatty"].restarts == 1
    assert not is_alive(first)  # type: ignore[arg-type]
    await sup.stop_all()


async def test_crash_restarts_with_doubling_backoff(supervise: Supervise) -> None:
    sup = await supervise(command("crasher", fixture_argv("crasher", "0.1", "3")))
    child = sup["crasher"]
    starts: list[float] = []
    last_pid = None

    def record() -> bool:
        nonlocal last_pid
        if child.pid is not None and child.pid != last_pid:
            last_pid = child.pid
            starts.append(time.monotonic())
        return len(starts) >= 3

    await until(record, timeout=15, what="three starts")
    assert child.last_exit is not None and child.last_exit.code == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each run lasts ~0.1 s plus interpreter start-up, then waits 1 s, then 2 s
    assert 1.0 <= gaps[0] < 2.0, gaps
    assert 2.0 <= gaps[1] < 3.0, gaps
    assert child.restarts == 2
    assert "-- backoff: exited with code 3, restarting in 2 s" in texts(sup, "crasher", "sys")
    await sup.stop_all()
    assert child.state is State.STOPPED


async def test_backoff_resets_after_a_long_run(
    monkeypatch: pytest.MonkeyPatch, supervise: Supervise
) -> None:
    monkeypatch.setattr(child_module, "BACKOFF_RESET_AFTER", 0.3)
    sup = await supervise(command("crasher", fixture_argv("crasher", "0.5", "1")))
    lines = lambda: [t for t in texts(sup, "crasher", "sys") if t.startswith("-- backoff")]  # noqa: E731
    await until(lambda: len(lines()) >= 2, timeout=10, what="two crashes")
    assert all(t.endswith("restarting in 1 s") for t in lines()), lines()
    await sup.stop_all()


async def test_sigterm_ignored_escalates_to_sigkill_after_grace(supervise: Supervise) -> None:
    sup = await supervise(command("stubborn", fixture_argv("ignores_sigterm"), GRACE=1))
    child = sup["stubborn"]
    await until(lambda: "ignoring SIGTERM" in " ".join(texts(sup, "stubborn")), what="ready")
    pid = child.pid
    began = time.monotonic()
    clean = await sup.stop_all()
    took = time.monotonic() - began
    assert not clean
    assert 1.0 <= took < 3.0, took
    assert child.last_exit is not None and child.last_exit.forced
    assert child.last_exit.signal == signal.SIGKILL
    assert texts(sup, "stubborn", "sys")[-1] == (
        "-- stopped: killed by SIGKILL after its grace period"
    )
    assert not is_alive(pid)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["same-group", "escape"])
async def test_stop_kills_grandchildren_even_outside_the_group(
    how: str, supervise: Supervise
) -> None:
    args = ["escape"] if how == "escape" else []
    sup = await supervise(command("parent", fixture_argv("spawns_grandchild", *args)))
    await until(lambda: any("grandchild" in t for t in texts(sup, "parent")), what="pids")
    await until(lambda: len(tree(sup["parent"].pid or 0)) == 2, what="child and grandchild")
    pids = tree(sup["parent"].pid or 0)
    # No waiting for the sampler: a grandchild it has not seen yet must not escape either.
    await sup.stop_all()
    assert wait_gone(pids, timeout=3) == []


async def test_leftovers_die_with_their_main_process(supervise: Supervise) -> None:
    sup = await supervise(command("parent", fixture_argv("spawns_grandchild")))
    await until(lambda: len(tree(sup["parent"].pid or 0)) >= 2, what="grandchild")
    pids = tree(sup["parent"].pid or 0)
    os.kill(pids[0], signal.SIGKILL)  # the main process dies alone
    await until(lambda: not any(map(is_alive, pids)), timeout=5, what="the grandchild to die")
    await until(lambda: sup["parent"].state is State.BACKOFF, what="backoff")
    await sup.stop_all()


async def test_megabyte_lines_are_split_and_kept_bounded(supervise: Supervise) -> None:
    sup = await supervise(command("long", fixture_argv("long_line", "3", "1")))
    await until(lambda: "done" in texts(sup, "long"), timeout=15, what="done")
    pieces = [t for t in texts(sup, "long", "out") if t.startswith("x")]
    assert all(len(t) <= 16384 for t in pieces)
    assert sum(map(len, pieces)) == 3 * 1024 * 1024
    await sup.stop_all()


async def test_a_million_lines_keep_the_ring_bounded(supervise: Supervise) -> None:
    sup = await supervise(command("flood", fixture_argv("flood", "1000000")), ring_lines=10_000)
    child = sup["flood"]
    await until(lambda: child.state is State.BACKOFF, timeout=60, what="flood to finish")
    out = [line for line in child.ring.since(0) if line.stream == "out"]
    assert len(child.ring) <= 10_000
    assert out[-1].text.startswith("0000999999")  # the newest line survived, nothing mangled
    assert child.ring.dropped >= 1_000_000 - 10_000
    await sup.stop_all()


async def test_hostile_output_is_sanitised(supervise: Supervise) -> None:
    sup = await supervise(command("hostile", fixture_argv("hostile_output")))
    await until(lambda: "END" in texts(sup, "hostile"), what="END")
    for text in texts(sup, "hostile", "out"):
        assert "\x00" not in text and "\x07" not in text and "\r" not in text
        assert "\x1b]" not in text and "\x1b[2J" not in text
    joined = "\n".join(texts(sup, "hostile", "out"))
    assert "\x1b[31mred\x1b[0m" in joined  # colours survive
    assert "[bold red]markup[/]" in joined  # markup is kept as plain data
    assert "\ufffd" in joined  # invalid UTF-8 replaced, not fatal
    await sup.stop_all()


async def test_a_config_error_does_not_stop_the_others(supervise: Supervise) -> None:
    bad = command("bad", ["no-such-program-anywhere"])
    sup = await supervise(bad, command("chatty", fixture_argv("chatty")))
    assert sup["bad"].state is State.CONFIG_ERROR
    assert texts(sup, "bad", "sys") == [
        "-- config-error: bad: program 'no-such-program-anywhere' not found; "
        "install it or give its full path"
    ]
    await until(lambda: sup["chatty"].state is State.RUNNING, what="chatty running")
    await sup.stop_all()


async def test_sampler_sums_the_whole_tree(supervise: Supervise) -> None:
    sup = await supervise(command("parent", fixture_argv("spawns_grandchild")))
    await until(
        lambda: sup["parent"].usage is not None and sup["parent"].usage.processes == 2,
        what="two processes sampled",
    )
    usage = sup["parent"].usage
    assert usage is not None and usage.rss > 2 * 5_000_000  # two Python interpreters
    await sup.stop_all()


async def test_a_web_entry_is_running_once_it_answers_http(supervise: Supervise) -> None:
    port = free_port()
    web = command(
        "web",
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        URL=f"http://127.0.0.1:{port}",
    )
    sup = await supervise(web)
    child = sup["web"]
    await until(lambda: child.state is State.RUNNING, what="ready")
    assert child.ready_after is not None and child.healthy
    ready = [t for t in texts(sup, "web", "sys") if t.startswith("-- ready in")]
    assert ready and ready[0].endswith(f"s at http://127.0.0.1:{port}")
    assert texts(sup, "web", "sys").index(ready[0]) < texts(sup, "web", "sys").index(
        f"-- running: pid {child.pid}"
    )


async def test_a_silent_web_entry_is_reported_not_ready(
    supervise: Supervise, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(child_module, "READY_TIMEOUT", 1.0)
    port = free_port()
    silent = command(
        "silent", fixture_argv("silent_port", str(port)), URL=f"http://127.0.0.1:{port}"
    )
    sup = await supervise(silent)
    await until(lambda: sup["silent"].healthy is False, timeout=15, what="not ready")
    # running (its process is up, nothing waits for it any more) and said to be not ready
    assert sup["silent"].state is State.RUNNING
    assert sup["silent"].ready_after is None
    said = texts(sup, "silent", "sys")
    assert f"-- not ready: nothing answers at http://127.0.0.1:{port} after 1 s" in said
    assert f"-- running: pid {sup['silent'].pid}, not answering HTTP" in said


async def test_a_knob_can_be_scaled_by_a_command(supervise: Supervise) -> None:
    spec = {"BACKEND": "helpers.ScaledByCommand", "ARGS": fixture_argv("chatty")}
    from backends.base import Project
    from tui.project import build_entry

    entry = build_entry("pool", spec, Project("s", "/tmp", settings=None))
    assert entry.error is None, entry.error
    sup = await supervise(entry)
    await until(lambda: sup["pool"].state is State.RUNNING, what="running")
    assert await sup.scale("pool", "size", 3)
    assert f"   size of {sup['pool'].pid}: 1 -> 3" in texts(sup, "pool", "sys")
    assert sup["pool"].entry.backend.scale["size"] == 3  # type: ignore[union-attr]


# -- the shutdown latch: once stop_all begins, nothing starts -----------------------------------


def ours(tag: str) -> list[int]:
    """Live processes of this test run whose command line carries ``tag``."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if tag in proc.cmdline() and is_alive(proc.pid):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def sleeper(name: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(10**6)", f"latch-{name}"]


async def test_a_restart_resuming_after_stop_all_spawns_nothing(supervise: Supervise) -> None:
    """The restart's stop and stop_all's wait for the same exit; the restart resumes first.
    Before the latch it spawned a new process that stop_all never stopped (and reported clean)."""
    sup = await supervise(command("web", fixture_argv("ignores_sigterm"), GRACE=1))
    child = sup["web"]
    await until(lambda: "ignoring SIGTERM" in " ".join(texts(sup, "web")), what="ready")
    restarting = asyncio.ensure_future(sup.restart("web"))
    await until(lambda: child.state is State.STOPPING, what="the restart's stop")
    await sup.stop_all()
    await restarting
    assert child.pid is None and child.state is State.STOPPED
    assert ours("ignores_sigterm") == []
    assert child.restarts == 0  # nothing was restarted
    assert "-- not started: the console is stopping" in texts(sup, "web", "sys")


async def test_starts_asked_for_during_stop_all_spawn_nothing(supervise: Supervise) -> None:
    """``R`` (restart all) or a start pressed while quitting, and a backoff retry whose timer
    fires then: none spawns, none is counted as a restart."""
    sup = await supervise(
        command("slow", fixture_argv("ignores_sigterm"), GRACE=2),
        command("idle", sleeper("idle")),
        command("crasher", fixture_argv("crasher", "0.1", "3")),
    )
    await until(lambda: "ignoring SIGTERM" in " ".join(texts(sup, "slow")), what="ready")
    await until(lambda: sup["crasher"].state is State.BACKOFF, what="backoff")
    await sup.stop("idle")
    stopping = asyncio.ensure_future(sup.stop_all())
    await until(lambda: sup["slow"].state is State.STOPPING, what="stop_all under way")
    sup["crasher"]._retry()  # its backoff timer fires now (the callback, at a chosen moment)
    await sup.restart("idle")
    await sup.start("idle")
    await sup.restart("crasher")
    await stopping
    await asyncio.sleep(0.3)  # anything let through has spawned by now
    assert ours("latch-idle") == [] and ours("crasher") == []
    assert all(c.pid is None and c.state is State.STOPPED for c in sup.children.values())
    assert sup["idle"].restarts == 0 and sup["crasher"].restarts == 0


async def test_an_abandoned_retry_is_not_counted_as_a_restart(supervise: Supervise) -> None:
    """The backoff timer fires just as the user stops the entry: nothing restarts, and the
    restart counter (``↻N`` on the pane) must not say otherwise."""
    sup = await supervise(command("crasher", fixture_argv("crasher", "0.1", "3")))
    child = sup["crasher"]
    await until(lambda: child.state is State.BACKOFF, what="backoff")
    child._retry()  # its timer fires (the callback runs; the retry task has not yet) ...
    await sup.stop("crasher")  # ... and the user stops it in the same instant
    await asyncio.sleep(0.3)  # the retry task has run by now
    assert child.state is State.STOPPED and child.pid is None
    assert child.restarts == 0


async def test_stop_all_does_not_block_the_loop_on_a_stalled_watchdog() -> None:
    """A watchdog that does not exit (here: SIGSTOPped) must not freeze the event loop while
    stop_all waits for it; before, ``Popen.wait`` blocked it until the watchdog ran again."""
    sup = Supervisor([command("idle", sleeper("stall"))], watchdog=True)
    try:
        await sup.start_all()
        await until(lambda: sup["idle"].state is State.RUNNING, what="running")
        [watchdog] = [
            p for p in psutil.Process().children() if "tui.engine.watchdog" in p.cmdline()
        ]
        watchdog.suspend()
        marks: dict[str, float] = {}

        def resume_later() -> None:
            """Once stop_all has stopped the child, it waits for the watchdog: a second of
            that, then the watchdog runs again."""
            while sup["idle"].state is not State.STOPPED:
                time.sleep(0.01)
            time.sleep(0.5)
            marks["stalled"] = time.monotonic()
            time.sleep(1.0)
            marks["resumed"] = time.monotonic()
            watchdog.resume()

        threading.Thread(target=resume_later, daemon=True).start()
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        ticking = asyncio.ensure_future(tick())
        await sup.stop_all()
        ticking.cancel()
        await until(lambda: "resumed" in marks, what="the watchdog resumed")
        assert any(marks["stalled"] < t < marks["resumed"] for t in ticks), "the loop stood still"
        assert not watchdog.is_running()
    finally:
        sup.kill_all()
        await sup.stop_all()


LATE_TALKER = """
import subprocess, sys
talk = "import time\\nfor n in range(1, 31):\\n print(f'late {n}', flush=True)\\n time.sleep(0.1)"
subprocess.Popen([sys.executable, "-c", talk], start_new_session=True)
print("main gone", flush=True)
"""


async def test_output_after_the_main_process_exits_is_read_while_it_arrives(
    supervise: Supervise,
) -> None:
    """A descendant nobody saw (it left the group before any sample) holds the pipes and talks
    for 3 s after the main process exits: all it says is read, to EOF, not cut 2 s after the
    exit (the last lines before a death are the ones that matter)."""
    sup = await supervise(command("talker", [sys.executable, "-c", LATE_TALKER]), sample_every=60)
    child = sup["talker"]
    await until(lambda: child.last_exit is not None, timeout=15, what="the exit")
    said = [line.text for line in child.ring.since(0) if line.stream == "out"]
    assert said[-3:] == ["late 28", "late 29", "late 30"], said
