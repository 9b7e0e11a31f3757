"""Wake-up reports: each task worker process says how it hears of new tasks, and the engine,
the status command and the console show it, only for processes still alive in the tree."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Console, fixture_argv
from helpers import until
from scene import scene
from textual.widgets import Label

from backends import wakeup_line
from backends.base import Project
from backends.wakeup_line import LONGEST, NOTIFY, POLLING, Report, line, parse
from tui.control import _status_lines, status_json
from tui.engine.supervisor import Supervisor
from tui.engine.views import WakeView, from_json, to_json
from tui.project import Entry, build_entry
from tui.widgets.taskpanel import TaskPanel

Supervise = Callable[..., Awaitable[Supervisor]]


def test_a_report_has_the_documented_shape_and_reads_back() -> None:
    said = line("web-01:4251", NOTIFY, "LISTEN prodserver_tui_ready, safety poll every 5 s")
    assert said == (
        "web-01:4251 wake-up: notify (LISTEN prodserver_tui_ready, safety poll every 5 s)"
    )
    assert parse(said) == Report(4251, NOTIFY)
    # the pid is what follows the last ':' of the first word
    assert parse("fe80::1:77 wake-up: doorbell (a datagram)") == Report(77, "doorbell")


def test_a_report_quoting_an_error_stays_one_short_line() -> None:
    said = line("h:9", POLLING, "no notify: connection refused\nDETAIL: " + "x" * 5000)
    assert "\n" not in said and len(said) == LONGEST
    assert parse(said) == Report(9, POLLING)


@pytest.mark.parametrize(
    ("label", "mode"), [("h:1", "push"), ("h", NOTIFY), ("h:x", NOTIFY), ("a b:1", NOTIFY)]
)
def test_a_report_cannot_be_written_in_another_shape(label: str, mode: str) -> None:
    with pytest.raises(ValueError, match="wake-up"):
        line(label, mode, "detail")


@pytest.mark.parametrize(
    "text",
    [
        "task said h:42 wake-up: notify (x)",  # not the first word
        " h:42 wake-up: notify (x)",
        "h:42 wake-up: push (x)",  # no such mode
        "h:42 wake-up: notify",  # no detail
        "h:42 wake-up: notify x",
        "h:42 wake-up: notify (x",
        "h:42 wake-up:  notify (x)",
        "h:42 wake-up: Notify (x)",
        "h:4x2 wake-up: notify (x)",
        "h:²3 wake-up: notify (x)",  # a digit to str.isdigit, no pid
        "h:0 wake-up: notify (x)",
        "h:12345678901 wake-up: notify (x)",
        ":42 wake-up: notify (x)",
        "42 wake-up: notify (x)",
        "\x1b[32mh:42 wake-up: notify (x)",
        "h:42 wake-up: notify (" + "x" * LONGEST + ")",
    ],
)
def test_anything_else_with_the_words_is_not_a_report(text: str) -> None:
    assert parse(text) is None


def reporting(name: str, cues: Path, count: int, mode: str) -> Entry:
    """A master with ``count`` worker processes that report ``mode`` (tests/fixtures)."""
    argv = fixture_argv("wakeup_workers", str(cues), str(count), mode)
    where = Project("unused.settings", "/tmp", settings=SimpleNamespace())
    built = build_entry(name, {"BACKEND": "helpers.InAWorkersPlace", "ARGS": argv}, where)
    assert built.error is None, built.error
    return built


def cue(cues: Path, pid: int, *lines: str) -> None:
    """What worker ``pid`` does next: written whole, then moved into place."""
    part = cues / f".{pid}"
    part.write_text("".join(f"{text}\n" for text in lines))
    os.replace(part, cues / str(pid))


def workers(sup: Supervisor, name: str) -> list[int]:
    said = [x.text for x in sup[name].ring.since(0) if x.text.startswith("workers ")]
    return [int(pid) for pid in said[0].split()[1:]] if said else []


def modes(sup: Supervisor, name: str) -> dict[int, str]:
    return {w.pid: w.mode for w in sup.view().process(name).wake_up}


async def test_the_view_follows_each_process_mode_and_drops_one_that_exits(
    supervise: Supervise, tmp_path: Path
) -> None:
    sup = await supervise(reporting("worker", tmp_path, 2, POLLING), stats_every=0)
    await until(lambda: len(workers(sup, "worker")) == 2, what="two worker processes", timeout=30)
    first, second = workers(sup, "worker")
    await until(
        lambda: modes(sup, "worker") == {first: POLLING, second: POLLING},
        what="reports",
        timeout=30,
    )
    assert "wake-up polling (2 processes)" in _status_lines(sup.view())[0]

    cue(tmp_path, first, NOTIFY)
    await until(
        lambda: modes(sup, "worker") == {first: NOTIFY, second: POLLING}, what="notify", timeout=30
    )
    assert "wake-up notify 1, polling 1" in _status_lines(sup.view())[0]

    # A task may print anything: a report in the wrong shape, of a pid outside the tree, or
    # within a line, changes nothing. The last line says all of them were read.
    fake = [
        f"say task said {wakeup_line.line(f'h:{second}', NOTIFY, 'x')}",
        f"say h:{second} wake-up: notify",
        f"say h:{second} wake-up: push (x)",
        f"say {wakeup_line.line(f'h:{os.getpid()}', NOTIFY, 'the test process, not a worker')}",
        "say all said",
    ]
    cue(tmp_path, second, *fake)
    await until(lambda: any(x.text == "all said" for x in sup["worker"].ring.since(0)), timeout=30)
    assert modes(sup, "worker") == {first: NOTIFY, second: POLLING}

    cue(tmp_path, first, "exit")
    await until(
        lambda: modes(sup, "worker") == {second: POLLING}, what="the exited one gone", timeout=30
    )
    view = sup.view()
    assert from_json(json.loads(json.dumps(to_json(view)))) == view
    info = {"pid": 1, "version": "0", "socket": "s", "project": "p", "settings_module": "m"}
    shown = status_json(view, {**info, "detached": False})["processes"][0]
    assert shown["wake_up"] == [{"pid": second, "mode": POLLING}]

    await sup.stop_all()
    assert sup.view().process("worker").wake_up == ()


async def test_the_task_panel_and_the_pane_show_each_worker_mode(
    console: Console, tmp_path: Path
) -> None:
    app = console(reporting("worker", tmp_path, 2, POLLING), stats_every=0, sample_every=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        sup = app.engine.supervisor
        await until(lambda: len(modes(sup, "worker")) == 2, what="two reports", timeout=30)
        first = workers(sup, "worker")[0]
        await until(
            lambda: "wake-up polling" in str(app.current.stats_text()), what="the pane", timeout=30
        )
        await pilot.press("t")
        assert isinstance(app.screen, TaskPanel)
        panel = app.screen

        def said() -> str:
            return str(panel.query_one("#wake-up", Label).content)

        await until(
            lambda: said() == "Wake-up: worker polling (2 processes)", what="panel", timeout=30
        )
        cue(tmp_path, first, NOTIFY)
        await until(lambda: said() == "Wake-up: worker notify 1, polling 1", timeout=10)
        await pilot.press("t")
        await until(
            lambda: "wake-up notify 1, polling 1" in str(app.current.stats_text()), timeout=30
        )


def test_views_round_trip_through_json_with_their_reports() -> None:
    view = scene().engine.view()
    assert view.process("worker").wake_up == (WakeView(4251, NOTIFY), WakeView(4252, NOTIFY))
    assert from_json(json.loads(json.dumps(to_json(view)))) == view
