"""Run by test_hostile_db in its own process: the console over a database full of hostile text.

Django settings load once per process, so the console reads the project's database the way a
user runs it: from the project folder, in a fresh process, with its real task worker. The test
ran the tasks before, with the same worker, and the rows are made hostile before the console
first looks (headless prints a finding once, when it appears). What every screen would write
to the terminal is taken from Textual's compositor (the string its driver writes) and from a
headless printer on the same supervisor; the process prints one JSON object of what it found.

Modes: ``payloads`` (the tasks failed with hostile messages; every row's path, one row's queue
and worker id are made hostile too, and a stuck task's), ``fuzz`` (the tasks failed with
strings of the hostile corpus, which also become the other rows' paths, queues, worker ids
and exception classes).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import until
from test_hostile_output import CONTROL
from textual.widgets import DataTable, Static

from backends.django_setup import setup_once
from backends.snapshot import failed
from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.headless import Printer
from tui.project import discover, entries
from tui.widgets.taskpanel import TaskPanel

if TYPE_CHECKING:
    from backends.taskstats import Snapshot

# Textual's own sequences in what it writes: colours and cursor moves, nothing else.
OWN = re.compile(r"\x1b\[[0-9;:]*m|\x1b\[\d+;\d+H")
HOSTILE_PATH = "testapp.tasks.fail\x1b]0;path\x07"
HOSTILE_QUEUE = "q\x1b[2J\u202eeuq"
HOSTILE_WORKER = "w\x1b]52;c;d29ya2Vy\x07"


T0 = time.monotonic()


def log(what: str) -> None:
    print(f"{time.monotonic() - T0:.2f} {what}", file=sys.stderr)


def acts(written: str) -> list[str]:
    """What a terminal would act on in what was written, besides Textual's own sequences and
    the headless printer's colours and line ends (test_hostile_output's definition)."""
    return sorted({repr(c) for c in CONTROL.findall(OWN.sub("", written).replace("\n", " "))})


def terminal(app: ConsoleApp) -> str:
    """What the driver would write for the whole screen now (the headless driver drops it)."""
    update = app.screen._compositor.render_update(full=True)
    assert update is not None
    return str(update.render_segments(app.console))  # type: ignore[attr-defined]


def read_pipe(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    try:
        while chunk := os.read(fd, 1 << 20):
            out += chunk
    except BlockingIOError:
        pass
    return out


async def orm(call: Callable[[], Any]) -> Any:
    """Django's ORM from a thread, its connection closed after (the console's own rule)."""

    def run() -> Any:
        from django.db import connections

        try:
            return call()
        finally:
            connections.close_all()

    return await asyncio.get_running_loop().run_in_executor(None, run)


def failed_count() -> int:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(status="FAILED").count()


def last_line(traceback: str) -> str:
    return traceback.rstrip().rpartition("\n")[2]


def last_texts() -> tuple[str, str]:
    from django_tasks_db.models import DBTaskResult

    traceback = DBTaskResult.objects.filter(status="FAILED").values_list("traceback", flat=True)
    return last_line(traceback[0])[:255], last_line(traceback[1])[:32]


def make_fuzz_rows() -> None:
    """Every failed row's path, queue, worker id and exception class become the messages of
    other rows: the corpus in every text column the console shows."""
    from django_tasks_db.models import DBTaskResult

    rows = list(DBTaskResult.objects.filter(status="FAILED").values_list("id", "traceback"))
    texts = [last_line(traceback) for _, traceback in rows]
    for i, (row_id, _) in enumerate(rows):
        other = [texts[(i + k) % len(texts)] for k in range(1, 5)]
        DBTaskResult.objects.filter(id=row_id).update(
            task_path=other[0][:255],
            queue_name=other[1][:32],
            worker_ids=[other[2][:64]],
            exception_class_path=other[3][:255],
        )


def make_stuck(path: str, queue: str) -> None:
    """A task RUNNING for a dead worker of this host: the task panel lists it."""
    from django_tasks_db.models import DBTaskResult
    from testapp import tasks

    from backends.taskworker import ids

    dead = subprocess.Popen(["true"])
    dead.wait()
    stuck = DBTaskResult.objects.get(id=tasks.noop.using(queue_name="other").enqueue().id)
    stuck.claim(ids.make(dead.pid, 1))
    DBTaskResult.objects.filter(id=stuck.id).update(task_path=path, queue_name=queue)


def make_hostile_rows() -> None:
    """Every failed row's path made hostile (the failure spike's finding quotes it), one row's
    queue and worker id too: any writer of the table can do this."""
    from django_tasks_db.models import DBTaskResult

    row = DBTaskResult.objects.filter(status="FAILED").order_by("-finished_at").first()
    assert row is not None
    DBTaskResult.objects.filter(status="FAILED").update(task_path=HOSTILE_PATH)
    DBTaskResult.objects.filter(id=row.id).update(
        queue_name=HOSTILE_QUEUE, worker_ids=[HOSTILE_WORKER]
    )


def corrupt_a_row() -> None:
    """Bytes that are not UTF-8, with a title sequence, as another program may write them into
    SQLite: Python cannot decode the row, and the error it raises quotes them."""
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    if connection.vendor != "sqlite":
        return
    table = DBTaskResult._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET traceback = CAST(X'ff1b5d303b7469746c6507fe0a' AS TEXT) "
            f"WHERE id = (SELECT id FROM {table} WHERE status = 'FAILED' LIMIT 1)"
        )


async def walk_panel(app: ConsoleApp, pilot: Any, screens: list[str]) -> None:
    """Open the task panel and show every failure's heading and traceback in turn."""
    await pilot.press("t")
    await until(lambda: isinstance(app.screen, TaskPanel), what="the task panel")
    panel = app.screen
    assert isinstance(panel, TaskPanel)
    panel.refresh_stats()
    table = panel.query_one("#failures", DataTable)
    await until(lambda: table.row_count > 0, what="failures in the panel")
    traceback = panel.query_one("#traceback Static", Static)
    await until(lambda: panel.query_one("#stuck", DataTable).row_count > 0, what="stuck task")
    for row in range(table.row_count):
        table.move_cursor(row=row)
        await until(
            lambda: panel.shown is not None and "reading" not in str(traceback.content),
            what=f"the traceback of row {row}",
        )
        await pilot.pause()
        screens.append(terminal(app))
    await pilot.press("t")


async def main(project_dir: Path, mode: str, failures: int) -> dict[str, object]:
    project = discover(None, [], project_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = project.settings_module
    setup_once()
    await orm(make_hostile_rows if mode == "payloads" else make_fuzz_rows)
    sup = Supervisor(entries(project, ["worker"]), watchdog=False, stats_every=0.1, project=project)
    app = ConsoleApp(LocalEngine(sup, project.settings_module), host="testhost")
    read_end, write_end = os.pipe()
    screens: list[str] = []

    def stuck() -> None:
        path, queue = (HOSTILE_PATH, HOSTILE_QUEUE) if mode == "payloads" else last_texts()
        make_stuck(path, queue)

    def stats() -> Snapshot:
        return sup.stats or failed("no statistics yet")

    try:
        async with app.run_test(size=(160, 48)) as pilot:
            app.engine.watch(Printer(app.engine, write_end, True, on_broken=lambda: None))
            await until(lambda: stats().failures and len(stats().failures) >= failures, timeout=30)
            await until(lambda: sup.findings, what="the failure-spike finding")
            # Its start-up recovery would requeue the stuck task: made after the recovery ran.
            started = lambda: sup["worker"].ring.since(0)  # noqa: E731
            await until(
                lambda: any("started worker process" in ln.text for ln in started()),
                what="the worker's start-up (and recovery)",
            )
            await orm(stuck)
            log("rows")
            await walk_panel(app, pilot, screens)
            log("walked")
            await pilot.pause()
            screens.append(terminal(app))  # the main screen: header, panes, findings
            if mode == "payloads":  # the statistics fail, and their error quotes the row
                await orm(corrupt_a_row)
                await until(lambda: "decode" in str(app.header.content), what="the error")
                await pilot.pause()
                screens.append(terminal(app))
            running = app.is_running
    finally:
        sup.kill_all()
        await sup.stop_all()
        os.close(write_end)
        log("stopped")
    headless = read_pipe(read_end).decode("utf-8", "surrogateescape")
    os.close(read_end)
    shown = "\n".join(screens)
    return {
        "running": running,
        "screens": len(screens),
        "acts": acts(shown),
        # Headless keeps a TAB, which only moves to the next tab stop (as assert_terminal_safe
        # allows); the screen expands it, so there any TAB still counts.
        "headless_acts": acts(headless.replace("\t", " ")),
        "screen": shown,
        "headless": headless,
    }


if __name__ == "__main__":
    out = asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
    print(json.dumps(out))
