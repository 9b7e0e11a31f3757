"""The console against real processes: every key and palette action does what it says."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from conftest import Console, fixture_argv
from helpers import command, enqueue, gunicorn, is_alive, run_json, tree, until

from tui.app import ConsoleApp
from tui.engine.child import State
from tui.keep_scale import snippet
from tui.project import Entry
from tui.widgets.dialogs import HelpScreen, ScaleScreen
from tui.widgets.pane import ProcessPane

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def running(app: ConsoleApp, *names: str) -> Callable[[], bool]:
    return lambda: all(app.engine.supervisor[n].state is State.RUNNING for n in names)


def chatty() -> Entry:
    return command("chatty", fixture_argv("chatty", "50"))


async def test_restart_stop_start_and_restart_all(console: Console) -> None:
    app = console(chatty(), command("other", fixture_argv("chatty", "5")))
    async with app.run_test(size=(160, 48)) as pilot:
        sup = app.engine.supervisor
        await until(running(app, "chatty", "other"), what="both running")
        first = sup["chatty"].pid
        await pilot.press("r")
        await until(lambda: sup["chatty"].pid not in (None, first), what="a new pid")
        assert not is_alive(first)  # type: ignore[arg-type]

        pids = tree(sup["chatty"].pid or 0)
        await pilot.press("s")
        await until(lambda: sup["chatty"].state is State.STOPPED, what="stopped")
        assert not any(map(is_alive, pids))
        await pilot.press("s")
        await until(running(app, "chatty"), what="started again")

        before = {n: sup[n].pid for n in ("chatty", "other")}
        await pilot.press("R")
        await until(
            lambda: all(sup[n].pid not in (None, before[n]) for n in before), what="all restarted"
        )


async def test_focus_moves_with_digits_arrows_tab_and_mouse(console: Console) -> None:
    wide = [sys.executable, "-c", "import time; print('x' * 500); time.sleep(60)"]
    app = console(chatty(), command("second", wide))
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.current.child.name == "chatty"
        await pilot.press("2")
        assert app.current.child.name == "second"
        log = app.current.log_view
        await until(
            lambda: log.virtual_size.width > log.size.width, what="a log wider than its pane"
        )
        await pilot.press("shift+right")  # a wide log scrolls sideways with shift; ← → move focus
        await until(lambda: log.scroll_x > 0, what="scrolled sideways")
        await pilot.press("left")
        assert app.current.child.name == "chatty"
        await pilot.press("right")
        assert app.current.child.name == "second"
        await pilot.press("tab")
        assert app.current.child.name == "chatty"
        await pilot.click("#pane-2")
        assert app.current.child.name == "second"


async def test_quit_stops_everything_and_leaves_no_orphan(console: Console) -> None:
    app = console(chatty(), command("parent", fixture_argv("spawns_grandchild", "escape")))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(running(app, "chatty", "parent"), what="running")
        await until(
            lambda: len(tree(app.engine.supervisor["parent"].pid or 0)) == 2, what="grandchild"
        )
        pids = [p for c in app.engine.supervisor.children.values() for p in tree(c.pid or 0)]
        await pilot.press("q")
        await until(lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 0
    assert not any(map(is_alive, pids))


async def test_second_quit_kills_what_ignores_sigterm(console: Console) -> None:
    stubborn = command("stubborn", fixture_argv("ignores_sigterm"), GRACE=60)
    app = console(stubborn)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(running(app, "stubborn"), what="running")
        pid = app.engine.supervisor["stubborn"].pid
        await pilot.press("q")
        await until(
            lambda: app.engine.supervisor["stubborn"].state is State.STOPPING, what="stopping"
        )
        assert "before SIGKILL" in str(app.current.title_text())  # the countdown is shown
        await pilot.press("ctrl+c")
        await until(lambda: app.return_code is not None, timeout=10, what="exit")
    assert app.return_code == 1  # something had to be killed
    assert not is_alive(pid)  # type: ignore[arg-type]


async def test_gunicorn_workers_scale_with_plus_minus_and_dialog(
    console: Console, djproject: Path
) -> None:
    web, _port = gunicorn(djproject, workers=2)
    app = console(web)
    async with app.run_test(size=(160, 48)) as pilot:
        sup = app.engine.supervisor

        def workers() -> int:
            return len(psutil.Process(sup["web"].pid).children()) if sup["web"].pid else -1

        await until(running(app, "web"), timeout=20, what="running")
        await until(lambda: workers() == 2, timeout=20, what="2 workers")
        await pilot.press("plus", "plus")
        await until(lambda: workers() == 4, timeout=60, what="4 workers")  # 2 gunicorn boots
        await pilot.press("minus")
        await until(lambda: workers() == 3, timeout=20, what="3 workers")
        await pilot.press("S")
        assert isinstance(app.screen, ScaleScreen)
        field = app.screen.query_one("#knob-workers")
        field.value = "1"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(lambda: workers() == 1, timeout=30, what="1 worker")
        await until(lambda: "workers 1/2" in str(app.current.stats_text()), what="now / configured")
    kept = snippet([c.entry for c in sup.children.values()], sup.redact)
    assert kept is not None and "(web workers 2 -> 1)" in kept, kept
    assert "'workers': '1'" in kept and f"'bind': '127.0.0.1:{_port}'" in kept, kept


def test_task_worker_threads_scale_and_task_panel_opens(djproject: Path) -> None:
    enqueue(djproject, "for i in range(30): tasks.add.enqueue(i, i)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [sys.executable, str(TESTS / "console_tasks.py"), str(djproject)]
    seen = run_json(argv, djproject, env, timeout=120)
    assert seen["threads_after"] == seen["threads_before"] + 2
    assert "threads 3/1" in seen["stats_line"]
    assert seen["panel"] and seen["panel_closed"]
    assert seen["queue_row"][0] == "default/default"


async def test_log_keys_search_wrap_follow_zoom_copy_help(console: Console) -> None:
    app = console(chatty())
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.engine.supervisor["chatty"].ring.next_seq > 200, what="lines")
        await pilot.pause(0.2)
        log = app.current.log_view
        assert log.follow
        await pilot.press("slash")
        await pilot.press(*"out 17", "enter")
        assert log.search_term == "out 17" and not log.follow
        top = log.scroll_y
        await pilot.press("n")  # "out 170", "out 171", ... match too: the view moves on
        assert log.scroll_y > top
        await pilot.press("N")  # and back to "out 17"
        assert log.scroll_y < top + 5
        await pilot.press("end")
        assert log.follow
        await pilot.press("w")
        assert log.wrap
        await pilot.press("z")
        assert app.screen.has_class("zoomed")
        await pilot.press("z")
        assert not app.screen.has_class("zoomed")
        await pilot.press("y")
        assert "out " in app.clipboard
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


async def test_scrolled_up_the_log_stays_put_and_counts_new_lines(console: Console) -> None:
    app = console(chatty())
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.engine.supervisor["chatty"].ring.next_seq > 200, what="lines")
        await pilot.pause(0.2)
        log = app.current.log_view
        await pilot.press("home")
        await pilot.pause(0.5)
        first_row = log.scroll_y
        assert not log.follow
        await until(lambda: log.waiting > 10, what="new lines counted")
        assert log.scroll_y == first_row
        assert "new (End)" in str(app.current.title_text())


async def test_a_full_ring_says_how_many_lines_it_dropped(console: Console) -> None:
    app = console(chatty(), ring_lines=50)
    async with app.run_test(size=(160, 48)):
        ring = app.engine.supervisor["chatty"].ring
        await until(lambda: ring.dropped > 20, what="a full ring")
        await until(
            lambda: f"{ring.dropped} older lines dropped" in str(app.current.title_text()),
            what="the count in the title",
        )


async def test_a_search_that_lands_on_the_last_screen_stops_following(console: Console) -> None:
    app = console(chatty())
    async with app.run_test(size=(160, 48)) as pilot:
        ring = app.engine.supervisor["chatty"].ring
        await until(lambda: ring.next_seq > 100, what="lines")
        log = app.current.log_view
        newest = ring.since(ring.next_seq - 1)[0].text  # on screen: the view follows
        assert log.follow
        await pilot.press("slash", *newest, "enter")
        assert log.search_term == newest
        row = log.scroll_y
        await until(lambda: log.waiting > 10, what="new lines arriving below")
        assert not log.follow and log.scroll_y == row


async def test_palette_has_an_entry_per_process_and_action(console: Console) -> None:
    app = console(chatty())
    async with app.run_test(size=(160, 48)) as pilot:
        await until(running(app, "chatty"), what="running")
        first = app.engine.supervisor["chatty"].pid
        await pilot.press("ctrl+p")
        await pilot.press(*"chatty: restart")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(
            lambda: app.engine.supervisor["chatty"].pid not in (None, first), what="restarted"
        )


async def test_small_terminal_shows_the_process_list(console: Console) -> None:
    app = console(chatty(), command("second", fixture_argv("chatty", "5")))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert app.screen.has_class("compact")
        assert app.query_one("#process-list").display
        assert not app.panes[1].display or app.panes[1].region.height == 0
        await pilot.resize_terminal(160, 48)
        await pilot.pause(0.2)
        assert not app.screen.has_class("compact")


async def test_hostile_output_renders_as_text(console: Console) -> None:
    app = console(
        command("hostile", fixture_argv("hostile_output")),
        command("long", fixture_argv("long_line", "2", "1")),
        command("bad", ["no-such-program-for-sure"]),
    )
    async with app.run_test(size=(160, 48)) as pilot:
        await until(
            lambda: any("END" in ln.text for ln in app.engine.supervisor["hostile"].ring.since(0))
        )
        await until(
            lambda: any("done" in ln.text for ln in app.engine.supervisor["long"].ring.since(0))
        )
        await pilot.pause(0.3)
        await pilot.press("w")  # wrapped megabyte lines too
        await pilot.pause(0.3)
        shown = {pane.child.name: rendered(pane) for pane in app.panes}
        assert any("[bold red]markup[/]" in row for row in shown["hostile"])
        assert not any("\x1b]" in row or "\x00" in row for row in shown["hostile"])
        assert any("no-such-program-for-sure" in row for row in shown["bad"])
        assert any(row.strip().startswith("xxxx") for row in shown["long"])


def rendered(pane: ProcessPane) -> list[str]:
    """The text rows a pane's title, stats and log draw, as the terminal receives them."""
    rows = [str(pane.title_text()), str(pane.stats_text())]
    log = pane.log_view
    for y in range(log.size.height):
        rows.append("".join(segment.text for segment in log.render_line(y)))
    return rows


async def test_palette_lists_every_action_of_every_process() -> None:
    from scene import scene
    from textual.command import CommandList, CommandPalette

    app = scene()
    async with app.run_test(size=(160, 48)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        await pilot.press("ctrl+p")  # nothing typed: the palette lists every command
        assert isinstance(app.screen, CommandPalette)
        options = app.screen.query_one(CommandList)

        def listed() -> set[str]:
            return {str(o.hit.text) for o in options.options}  # type: ignore[attr-defined]

        await until(lambda: listed() >= set(titles), what="every command in the palette")
    for name in ("web", "worker", "css", "api"):
        assert {f"{name}: restart", f"{name}: stop / start", f"{name}: zoom"} <= set(titles)
    assert {"web: scale…", "web: workers +1", "web: workers -1"} <= set(titles)
    assert {"worker: threads +1", "worker: task panel"} <= set(titles)
    assert "css: scale…" not in titles  # a plain command has no knob
    assert {"restart all", "run check --deploy", "help", "quit"} <= set(titles)
    assert "Quit" not in titles and "Theme" in titles  # ours replaces Textual's quit only
    assert len(titles) == len(set(titles))
