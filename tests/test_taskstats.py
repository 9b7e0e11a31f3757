"""backends.taskstats against a real SQLite database of the test project.

Django settings can be configured once per process and other tests may have done so already,
so the checks against the database run in a child process: it builds rows through the real
model (``enqueue``, ``claim``, ``set_successful``/``set_failed``) and direct ORM updates for
the timestamps, calls ``poll`` and prints what it saw as JSON for the asserts here.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from helpers import run_json

from backends import taskstats
from backends.taskworker import ids

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import dataclasses, importlib, json, sqlite3, sys
    from datetime import timedelta

    repo, mode = sys.argv[1], sys.argv[2]
    sys.path[:0] = [".", repo]
    import os
    os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
    import django
    django.setup()

    from django.db import connection
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult
    from testapp import tasks
    from backends import taskstats
    from backends.taskworker import ids

    def dump(snap):
        return json.loads(json.dumps(dataclasses.asdict(snap), default=str))

    out = {}
    if mode == "empty":  # a database nobody migrated
        out["empty"] = dump(taskstats.poll())
        print(json.dumps(out))
        raise SystemExit

    here, there = ids.this_host(), "some-other-host"
    now = timezone.now()
    s = lambda seconds: timedelta(seconds=seconds)

    def finish(task, args, ok, ago, run, wait, worker, queue=None):
        if queue:
            task = task.using(queue_name=queue)
        result = task.enqueue(*args)
        row = DBTaskResult.objects.get(id=result.id)
        row.claim(worker)
        if ok:
            row.set_successful(42)
        else:
            try:
                raise ValueError(args[0])
            except ValueError as exc:
                row.set_failed(exc)
        finished = now - s(ago)
        DBTaskResult.objects.filter(id=result.id).update(
            finished_at=finished,
            started_at=finished - s(run),
            enqueued_at=finished - s(run) - s(wait),
        )
        return str(result.id)

    # READY: 3 due (one of them deferred to a past time), 2 deferred into the future.
    first = tasks.noop.enqueue()
    DBTaskResult.objects.filter(id=first.id).update(enqueued_at=now - s(100))
    tasks.noop.enqueue()
    tasks.noop.using(run_after=now - s(300)).enqueue()
    tasks.noop.using(run_after=now + s(3600)).enqueue()
    tasks.noop.using(run_after=now + s(7200)).enqueue()

    # RUNNING: ours (pid 4242), another host's and another container's with our hostname
    # (same pid!), a db_worker-style id.
    other_container = f"{here}:4242:2@{'0' * ids.SCOPE_LENGTH}"
    for worker in (ids.make(4242, 0), f"{there}:4242:1", other_container, "3f2a9c0d1b"):
        row = DBTaskResult.objects.get(id=tasks.sleep.enqueue(5).id)
        row.claim(worker)

    # Finished in the default queue: runs 1..16 s, waits 0.5..8 s, known windows.
    spec = [  # ok, seconds ago, worker
        (True, 2, ids.make(4242, 0)),
        (True, 4, ids.make(4242, 1)),
        (True, 6, ids.make(4343, 0)),
        (True, 8, f"{there}:4242:0"),  # not ours: counted per queue, not per pid
        (True, 30, ids.make(4242, 0)),
        (True, 50, ids.make(4343, 0)),
        (False, 5, ids.make(4242, 0)),
        (False, 40, ids.make(4343, 0)),
    ] + [(True, 3600 + i, ids.make(4242, 0)) for i in range(5)] + [
        (False, 7200 + i, ids.make(1111, 0)) for i in range(3)
    ]
    for k, (ok, ago, worker) in enumerate(spec, start=1):
        message = f"boom {ago}"
        finish(tasks.add if ok else tasks.fail, (1, 2) if ok else (message,), ok, ago,
               run=k, wait=k / 2, worker=worker)

    # A queue that is not configured any more but still has rows.
    DBTaskResult.objects.create(
        args_kwargs={"args": [], "kwargs": {}}, task_path="testapp.tasks.noop",
        queue_name="legacy", backend_name="default", run_after=now - s(10),
        status="SUCCESSFUL", enqueued_at=now, started_at=now - s(86400),
        finished_at=now - s(86400) + s(1), worker_ids=["legacy-worker"],
    )

    out["first"] = dump(taskstats.poll(failures=4))

    # The settled totals advance: one more success now, then a fresh recount agrees.
    finish(tasks.add, (1, 2), True, 1, run=1, wait=1, worker=ids.make(4242, 0))
    out["second"] = dump(taskstats.poll())
    taskstats.reset()
    out["recounted"] = dump(taskstats.poll())

    # The same numbers through the optional indexes (the migration's own SQL).
    migration = importlib.import_module("backends.taskworker.migrations.0001_task_result_indexes")
    with connection.cursor() as cursor:
        for operation in migration.Migration.operations:
            cursor.execute(operation.sql)
    out["has_index"] = taskstats.has_index()
    taskstats.reset()
    out["indexed"] = dump(taskstats.poll())

    # A writer holding SQLite's exclusive lock: an error line, not an exception.
    connection.close()
    connection.settings_dict["OPTIONS"]["timeout"] = 0.2
    locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    out["locked"] = dump(taskstats.poll())
    locker.execute("ROLLBACK")
    locker.close()
    out["unlocked"] = dump(taskstats.poll())["error"]

    # The table gone (migrations rolled back by hand).
    with connection.schema_editor() as editor:
        editor.delete_model(DBTaskResult)
    out["dropped"] = dump(taskstats.poll())

    out["ui_modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("textual", "rich", "tui")
    )
    print(json.dumps(out))
    """
)


def run_script(project: Path, tmp_path: Path, mode: str, db: Path | None = None) -> Any:
    script = tmp_path / "stats_check.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    if db is not None:
        env["DJPROJECT_DB"] = str(db)
    return run_json([sys.executable, str(script), str(REPO), mode], project, env)


def test_poll_on_a_real_database(djproject: Path, tmp_path: Path) -> None:
    """One child process builds the rows and polls in every state; each check reads a part.

    (One test, because each migrated copy of the project costs about a second.)
    """
    seen = run_script(djproject, tmp_path, "full")
    check_counts_windows_and_percentiles(seen)
    check_configured_empty_queue_and_row_only_queue(seen)
    check_failures_most_recent_first(seen)
    check_by_pid_only_for_this_hosts_ids(seen)
    check_totals_advance_recount_and_index_agree(seen)
    check_database_trouble_is_an_error_line(seen)
    empty = run_script(djproject, tmp_path, "empty", db=tmp_path / "never-migrated.sqlite3")
    assert empty["empty"]["error"] == seen["dropped"]["error"]
    assert empty["empty"]["queues"] == []


def queues(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {q["queue"]: q for q in snap["queues"] if q["backend"] == "default"}


def check_counts_windows_and_percentiles(seen: Any) -> None:
    snap = seen["first"]
    assert snap["error"] is None
    assert [(q["backend"], q["queue"]) for q in snap["queues"]] == [
        ("default", "default"),
        ("default", "legacy"),
        ("default", "other"),
    ]
    default = queues(snap)["default"]
    assert (default["ready"], default["scheduled"], default["running"]) == (3, 2, 4)
    assert (default["succeeded_1m"], default["failed_1m"]) == (6, 2)
    assert (default["succeeded_total"], default["failed_total"]) == (11, 5)
    assert default["throughput_10s"] == pytest.approx(5 / 10)  # 4 successes + 1 failure
    assert default["throughput_60s"] == pytest.approx(8 / 60)
    # 16 finished tasks ran 1..16 s after waiting 0.5..8 s (linear interpolation).
    assert default["run_p50"] == pytest.approx(8.5, abs=1e-3)
    assert default["run_p95"] == pytest.approx(15.25, abs=1e-3)
    assert default["wait_p50"] == pytest.approx(4.25, abs=1e-3)
    assert default["wait_p95"] == pytest.approx(7.625, abs=1e-3)
    # Waiting since enqueued_at 100 s ago; the deferred-to-the-past one waits from enqueue.
    assert 100 <= snap["oldest_ready_wait"] < 110


def check_configured_empty_queue_and_row_only_queue(seen: Any) -> None:
    by_name = queues(seen["first"])
    other = by_name["other"]
    assert {k: v for k, v in other.items() if k not in ("backend", "queue")} == {
        "ready": 0,
        "scheduled": 0,
        "running": 0,
        "succeeded_1m": 0,
        "failed_1m": 0,
        "succeeded_total": 0,
        "failed_total": 0,
        "throughput_10s": 0.0,
        "throughput_60s": 0.0,
        "wait_p50": None,
        "wait_p95": None,
        "run_p50": None,
        "run_p95": None,
    }
    legacy = by_name["legacy"]
    assert (legacy["succeeded_total"], legacy["succeeded_1m"], legacy["ready"]) == (1, 0, 0)
    assert legacy["run_p50"] == pytest.approx(1.0, abs=1e-3)


def check_failures_most_recent_first(seen: Any) -> None:
    failures = seen["first"]["failures"]
    assert [f["message"] for f in failures] == [
        "ValueError: boom 5",
        "ValueError: boom 40",
        "ValueError: boom 7200",
        "ValueError: boom 7201",
    ]
    first = failures[0]
    assert first["exception"] == "builtins.ValueError"
    assert first["task_path"] == "testapp.tasks.fail"
    assert first["queue"] == "default"
    assert first["worker_id"].startswith(f"{ids.this_host()}:4242:0@")
    assert len(first["id"]) == 36  # a dashed UUID, as django-tasks reports result ids


def check_by_pid_only_for_this_hosts_ids(seen: Any) -> None:
    by_pid = {int(pid): counts for pid, counts in seen["first"]["by_pid"].items()}
    # pid 4242 of another host runs one task and finished one, and pid 4242 of another
    # container with our hostname runs one: none of these is counted here.
    assert by_pid == {
        4242: {"running": 1, "succeeded_1m": 3, "failed_1m": 1},
        4343: {"running": 0, "succeeded_1m": 2, "failed_1m": 1},
    }


def check_totals_advance_recount_and_index_agree(seen: Any) -> None:
    second = queues(seen["second"])["default"]
    assert (second["succeeded_total"], second["succeeded_1m"]) == (12, 7)
    assert same(seen["recounted"], seen["second"])
    assert seen["has_index"] is True
    assert same(seen["indexed"], seen["recounted"])


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for the clock: when the poll ran and so how long the oldest task waited."""
    clock = ("taken_at", "oldest_ready_wait")
    return {k: v for k, v in a.items() if k not in clock} == {
        k: v for k, v in b.items() if k not in clock
    }


def check_database_trouble_is_an_error_line(seen: Any) -> None:
    locked = seen["locked"]
    assert locked["queues"] == [] and locked["failures"] == [] and locked["by_pid"] == {}
    assert "locked" in locked["error"]
    assert seen["unlocked"] is None
    dropped = seen["dropped"]
    assert dropped["queues"] == []
    assert dropped["error"] == (
        "table django_tasks_database_dbtaskresult is missing: run manage.py migrate"
    )
    assert seen["ui_modules"] == []


def test_interface_shape() -> None:
    assert [f.name for f in fields(taskstats.QueueStats)] == [
        "backend", "queue", "ready", "scheduled", "running", "succeeded_1m", "failed_1m",
        "succeeded_total", "failed_total", "throughput_10s", "throughput_60s",
        "wait_p50", "wait_p95", "run_p50", "run_p95",
    ]  # fmt: skip
    assert [f.name for f in fields(taskstats.Snapshot)] == [
        "taken_at", "queues", "failures", "by_pid", "oldest_ready_wait", "error",
    ]  # fmt: skip
    classes: tuple[Any, ...] = (
        taskstats.QueueStats,
        taskstats.Failure,
        taskstats.WorkerCounts,
        taskstats.Snapshot,
    )
    for cls in classes:
        assert cls.__dataclass_params__.frozen


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("no such table: django_tasks_database_dbtaskresult", "run manage.py migrate"),
        ('relation "django_tasks_database_dbtaskresult" does not exist\nLINE 1: ...', "migrate"),
        ("database is locked", "database is locked"),
        ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', "running"),
        ("something odd\nsecond line", "database error on 'default': something odd second line"),
    ],
)
def test_explain_is_one_line(message: str, expected: str) -> None:
    text = taskstats.explain(Exception(message))
    assert "\n" not in text
    assert expected in text


def test_percentiles() -> None:
    assert taskstats.p50_p95([]) == (None, None)
    assert taskstats.p50_p95([3.0]) == (3.0, 3.0)
    assert taskstats.p50_p95([4.0, 1.0]) == (2.5, pytest.approx(3.85))  # any order
    assert taskstats.p50_p95([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(3.85))
    p50, p95 = taskstats.p50_p95([float(i) for i in range(1, 101)])
    assert (p50, p95) == (50.5, pytest.approx(95.05))
