"""A log follows until the user scrolls up, whatever the layout does meanwhile.

Textual clamps a log's scroll position whenever its pane changes size (a resize, a zoom, a
banner appearing or going, a dialog over the screen): none of that is the user scrolling, so
none of it may stop a log from following. Every scenario runs real children and checks what
each pane draws: its newest line at the bottom, and no "⏸ N new (End)" in its title.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, Console, fixture_argv
from console_follow import all_follow
from helpers import command, run_json, tree, until, wait_gone
from needs import needs
from test_own_death import Terminal, console_argv, console_env
from textual import events
from textual.pilot import Pilot

from backends.diagnostics import Finding
from tui.app import ConsoleApp
from tui.engine.child import State
from tui.project import Entry
from tui.widgets.logview import plain

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def console(console: Console) -> Console:
    """conftest's console, over chatty children of these names (lines a second) unless given
    the entries."""

    def make(
        *names: str, entries: list[Entry] | None = None, rate: int = 50, **options: object
    ) -> ConsoleApp:
        chatty = [command(n, fixture_argv("chatty", str(rate))) for n in names]
        return console(*(entries or chatty), stats_every=1.5, **options)

    return make


async def started(app: ConsoleApp, pilot: Pilot[int]) -> None:
    for child in app.engine.supervisor.children.values():
        await until(lambda c=child: c.ring.next_seq > 60, what=f"{child.name}: lines")  # type: ignore[misc]
    await all_follow(app, "at start")


NAMES = ("a", "b", "c", "d")


async def test_resizes_keep_every_log_following(console: Console) -> None:
    app = console(*NAMES)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(app, pilot)
        for size in ((80, 24), (160, 60), (160, 48)):
            await pilot.resize_terminal(*size)
            await all_follow(app, f"at {size[0]}x{size[1]}")


async def test_zoom_in_and_out_keeps_every_log_following(console: Console) -> None:
    app = console(*NAMES)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(app, pilot)
        await pilot.press("z")
        await all_follow(app, "zoomed")
        await pilot.press("z")
        await all_follow(app, "unzoomed")


async def test_findings_banner_coming_and_going_keeps_every_log_following(
    console: Console,
) -> None:
    app = console(*NAMES)
    async with app.run_test(size=(160, 48)) as pilot:
        await started(app, pilot)
        sup = app.engine.supervisor
        # Not port-in-use: an entry reaching running clears that one by itself (its own socket
        # answers, or it has no probe), and "a" may reach running just after this.
        held = Finding("error", "unknown-keys", "a", "ARGS has no key FOO", "remove FOO")
        general = Finding("warning", "debug", None, "DEBUG is on", "turn it off")
        banners = [app.query_one("#findings"), app.panes[0].query_one(".findings")]
        sup._publish(setup=[held, general])
        await until(lambda: all(b.region.height for b in banners), what="both banners shown")
        await all_follow(app, "under the banners")
        sup._publish(setup=[])
        await until(lambda: not any(b.region.height for b in banners), what="banners gone")
        await all_follow(app, "after the banners went")


async def test_full_rings_at_mount_follow(console: Console) -> None:
    app = console(*NAMES, ring_lines=100)
    await app.engine.supervisor.start_all()
    for child in app.engine.supervisor.children.values():
        await until(lambda c=child: c.ring.dropped > 50, what=f"{child.name}: a full ring")  # type: ignore[misc]
    app.start_processes = False
    async with app.run_test(size=(160, 48)) as pilot:
        await all_follow(app, "at mount")
        await pilot.resize_terminal(160, 60)
        await all_follow(app, "at 160x60")


async def test_only_the_user_stops_and_resumes_following(console: Console) -> None:
    """Keys, the wheel and the scrollbar stop following and take it up again; a zoom before
    and a resize between them change nothing of it; End follows again."""
    app = console(*NAMES, rate=10)  # slow enough for the wheel to get back to the bottom
    async with app.run_test(size=(160, 48)) as pilot:
        await started(app, pilot)
        await pilot.press("z")  # a layout change first: it must not count as scrolling
        await all_follow(app, "zoomed")
        pane = app.current
        log = pane.log_view

        async def stopped(how: str) -> None:
            assert not log.follow, how
            row = log.scroll_y
            await until(lambda: log.waiting > 5, what=f"new lines below the view after {how}")
            pane.update_info()
            assert "new (End)" in str(pane.title_text()), how
            assert log.scroll_y == row, how  # the view stays where the user put it

        for key in ("up", "pageup", "home"):
            await pilot.press(key)
            await stopped(key)
            await pilot.press("end")
            await all_follow(app, f"after End (following {key})")

        await pilot._post_mouse_events([events.MouseScrollUp], log)
        await stopped("the wheel up")
        await pilot.resize_terminal(150, 50)  # a layout change does not resume it either
        await stopped("the wheel up and a resize")

        await pilot.press("s")  # a quiet log now, so the wheel can reach its bottom
        await until(lambda: pane.child.state is State.STOPPED, what="stopped")
        for _ in range(20):
            await pilot._post_mouse_events([events.MouseScrollDown], log)
            if log.scroll_y >= log.max_scroll_y:
                break
        await all_follow(app, "after the wheel went down to the bottom")

        bar = log.vertical_scrollbar
        await pilot.mouse_down(bar, offset=(0, bar.size.height - 1))
        await pilot.hover(bar, offset=(0, 0))  # drag the thumb up
        await pilot.mouse_up(bar, offset=(0, 0))
        assert not log.follow and log.scroll_y < log.max_scroll_y
        await pilot.mouse_down(bar, offset=(0, 0))
        await pilot.hover(bar, offset=(0, bar.size.height - 1))  # and down to the end
        await pilot.mouse_up(bar, offset=(0, bar.size.height - 1))
        await all_follow(app, "after dragging the scrollbar to the bottom")


# -- search ----------------------------------------------------------------------------------


def printer(name: str, folder: Path, lines: list[str]) -> Entry:
    """A child that prints these lines, then stays quiet: a log that holds still. The lines
    come from a file: in its argv they would be in the log's first line too."""
    text = folder / f"{name}.txt"
    text.write_text("".join(f"{line}\n" for line in lines))
    code = "import sys, time; sys.stdout.write(open(sys.argv[1]).read()); sys.stdout.flush()"
    return command(name, [sys.executable, "-c", f"{code}; time.sleep(600)", str(text)])


async def test_a_match_beyond_the_right_edge_scrolls_into_view(
    console: Console, tmp_path: Path
) -> None:
    lines = [f"line {i} " + "x" * 300 + (" NEEDLE " if i % 7 == 0 else "") for i in range(60)]
    app = console(entries=[printer("wide", tmp_path, lines)])
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.current.log_view
        await until(lambda: log._next >= 60, what="every line taken")
        await pilot.press("slash", *"needle", "enter")
        width = log.scrollable_content_region.width
        assert log.scroll_x > 0
        rows = ["".join(s.text for s in log.render_line(y)) for y in range(log.size.height)]
        assert any("NEEDLE" in row for row in rows), rows
        await pilot.press("n")
        assert any("NEEDLE" in "".join(s.text for s in log.render_line(y)) for y in range(width))


async def test_the_title_counts_matches(console: Console, tmp_path: Path) -> None:
    lines = [f"hit {i}" if i % 3 == 0 else f"miss {i}" for i in range(48)]  # 16 lines hit
    lines[1] = "a hit and another hit"  # two in one line: 18 in all
    app = console(entries=[printer("p", tmp_path, lines)])
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.current
        await until(lambda: pane.log_view._next >= 48, what="every line taken")
        await pilot.press("slash", *"HIT", "enter")
        shown = re.search(r"match (\d+) of 18", str(pane.title_text()))
        assert shown, str(pane.title_text())
        first = int(shown[1])
        for step in range(1, 20):
            await pilot.press("n")
            assert f"match {(first - 1 + step) % 18 + 1} of 18" in str(pane.title_text())
        await pilot.press("N")
        assert f"match {(first - 1 + 18) % 18 + 1} of 18" in str(pane.title_text())


async def test_wrap_keeps_the_line_in_view_and_the_match(console: Console, tmp_path: Path) -> None:
    lines = [f"line {i} " + "abcdefghij " * (i % 40) for i in range(400)]
    lines[200] = "line 200 " + "y" * 500 + " TARGET " + "z" * 100
    app = console(entries=[printer("p", tmp_path, lines)])
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.current.log_view
        await until(lambda: log._next >= 400, what="every line taken")

        def top() -> str:
            return plain(log.ring.at(log._row_seq(int(log.scroll_y))).text).split()[1]  # type: ignore[union-attr]

        await pilot.press("home", "pagedown", "pagedown", "pagedown")
        before = top()
        assert before != "0"
        await pilot.press("w")
        assert log.wrap and top() == before
        await pilot.press("pagedown")
        before = top()
        await pilot.press("w")
        assert not log.wrap and top() == before

        def match_on_screen() -> bool:
            rows = ["".join(s.text for s in log.render_line(y)) for y in range(log.size.height)]
            return any("TARGET" in row for row in rows)

        await pilot.press("slash", *"target", "enter")
        assert match_on_screen()
        for _ in range(2):
            await pilot.press("w")
            assert match_on_screen(), f"wrap={log.wrap}"


def test_the_task_panel_opening_and_closing_keeps_every_log_following(djproject: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [sys.executable, str(TESTS / "console_follow.py"), str(djproject)]
    failed = run_json(argv, djproject, env, timeout=180)
    assert failed == {}, "\n".join(failed.values())


@needs("tmux", lambda: None if shutil.which("tmux") else "not on PATH (a real pty)")
def test_a_resize_storm_while_a_child_floods_leaves_every_log_following(tmp_path: Path) -> None:
    """The real console in a real terminal: 20 resizes in 2 s while one child floods and
    three talk; when all have said their last line, every pane shows it."""
    flood = f"{sys.executable} {FIXTURES / 'flood.py'} 3000000; echo FLOOD END; exec sleep 600"
    talk = (
        "import sys, time\nfor i in range(150): print(sys.argv[1], i, flush=True); time.sleep(0.03)"
        "\nprint('END', sys.argv[1], flush=True); time.sleep(600)"
    )
    quiet = {name: [sys.executable, "-c", talk, name] for name in ("a", "b", "c")}
    processes = {"flood": ["sh", "-c", flood], **quiet}
    (tmp_path / "s.py").write_text(
        "SECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {\n"
        + "".join(
            f"    {name!r}: {{'BACKEND': 'backends.command.Command', 'ARGS': {argv!r}}},\n"
            for name, argv in processes.items()
        )
        + "}\n"
    )
    terminal = Terminal(console_argv("s"), tmp_path, console_env(tmp_path / "unused.sqlite3"))
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not re.search(r"a \d+", screen := terminal.screen()):
            assert time.monotonic() < deadline, screen
            time.sleep(0.05)
        pids = tree(terminal.pid)
        sizes = [(80, 24), (160, 48), (120, 40), (200, 60), (100, 30)]
        for i in range(20):
            width, height = sizes[i % len(sizes)]
            terminal.tmux("resize-window", "-x", str(width), "-y", str(height))
            time.sleep(0.1)
        terminal.tmux("resize-window", "-x", "160", "-y", "48")
        ends = ("FLOOD END", "END a", "END b", "END c")
        deadline = time.monotonic() + 60
        while not all(end in (screen := terminal.screen()) for end in ends):
            assert time.monotonic() < deadline, f"not every pane shows its last line:\n{screen}"
            time.sleep(0.2)
        assert "new (End)" not in screen, screen
    finally:
        pids = pids or tree(terminal.pid)
        terminal.close()
    assert wait_gone(pids, timeout=20) == []
