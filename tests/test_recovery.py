"""Stuck-task recovery against a real SQLite database and real processes for liveness.

Django settings can be configured once per process and other test modules may have done so
first, so every scenario runs in a fresh interpreter: a short script that prints JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from clockstep import SteppedClock
from helpers import enqueue, statuses, tree, wait_gone
from needs import require

from backends.taskworker import ids, recovery

REPO = Path(__file__).resolve().parent.parent
DB_WORKER_ARGS = ("--batch", "--no-reload", "--no-startup-delay", "--queue-name", "default")

PRELUDE = """
import json, os, sys
from dataclasses import asdict
from datetime import timedelta

sys.path[:0] = [os.environ["RECOVERY_REPO"], os.getcwd()]
import django

django.setup()
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks_db.models import DBTaskResult

from backends.taskworker import ids, recovery
from testapp import tasks

P = json.loads(sys.argv[1])
logging_handler = __import__("logging").StreamHandler(sys.stderr)
__import__("logging").getLogger("backends.taskworker").addHandler(logging_handler)


def running(worker_id, task=tasks.add, args=(1, 2), started_ago=None):
    # Claimed the way db_worker claims, optionally back-dated.
    result = task.enqueue(*args)
    row = DBTaskResult.objects.get(id=result.id)
    row.claim(worker_id)
    if started_ago is not None:
        DBTaskResult.objects.filter(id=row.id).update(
            started_at=timezone.now() - timedelta(seconds=started_ago)
        )
    return str(row.id)


def row(task_id):
    r = DBTaskResult.objects.get(id=task_id)
    return {
        "status": r.status, "worker_ids": r.worker_ids, "started_at": r.started_at,
        "finished_at": r.finished_at, "exception_class_path": r.exception_class_path,
        "traceback": r.traceback, "return_value": r.return_value,
    }


def stuck(tasks_):
    return [asdict(t) for t in tasks_]

"""


def run(
    djproject: Path, body: str, clock: SteppedClock | None = None, **params: Any
) -> tuple[Any, str]:
    """Run ``body`` (which sets ``out``) in a fresh Django process; ``out`` and stderr. With
    ``clock``, the process sees the machine's clock as stepped by it."""
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out, default=str))\n"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "djproject.settings", "RECOVERY_REPO": str(REPO)}
    argv = [sys.executable, "-c", code, json.dumps(params)]
    proc = subprocess.run(
        clock.argv(*argv) if clock else argv,
        cwd=djproject,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode:
        pytest.fail(f"scenario failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real, live process whose pid can stand in for a worker's."""
    proc = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL)
    yield proc
    proc.kill()
    proc.wait()


def wait_for_zombie(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {pid} did not become a zombie"
        time.sleep(0.01)


def dead_pid() -> int:
    """A pid that just exited and was reaped."""
    proc = subprocess.Popen(["true"], stdin=subprocess.DEVNULL)
    proc.wait()
    return proc.pid


def test_live_worker_is_not_stuck_until_it_dies(
    djproject: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    out, _ = run(
        djproject,
        """
        task_id = running(ids.make(P["pid"], 3))
        out = {"id": task_id, "stuck": stuck(recovery.find_stuck())}
        """,
        pid=sleeper.pid,
    )
    assert out["stuck"] == []

    sleeper.kill()  # not reaped yet: a zombie counts as dead
    wait_for_zombie(sleeper.pid)
    found, _ = run(djproject, "out = stuck(recovery.find_stuck())")
    assert [(t["id"], t["reason"]) for t in found] == [(out["id"], f"pid {sleeper.pid} is gone")]
    assert found[0]["worker_id"] == ids.make(sleeper.pid, 3)
    assert found[0]["task_path"] == "testapp.tasks.add"
    assert found[0]["queue"] == "default"

    sleeper.wait()  # reaped: no such process at all
    found, _ = run(djproject, "out = stuck(recovery.find_stuck())")
    assert [t["reason"] for t in found] == [f"pid {sleeper.pid} is gone"]


def test_a_clock_step_does_not_make_a_live_worker_look_replaced(
    djproject: Path, tmp_path: Path
) -> None:
    """A real task worker runs a long task; the wall clock steps a minute forward (an NTP
    correction); then recovery runs, as when another worker entry starts on this host. The
    task stays with its live worker. Before, the worker's psutil create time (boot time +
    ticks) moved with the step to after the claim's ``started_at``: "now belongs to another
    program", and the task was requeued while it ran, to run twice."""
    clock = SteppedClock(tmp_path)
    enqueue(djproject, "tasks.sleep.enqueue(60)")
    worker = [sys.executable, "-m", "backends.taskworker", "--queue-name", "default"]
    worker += ["--interval", "0.1", "--no-startup-delay"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "djproject.settings", "PYTHONPATH": str(REPO)}
    with (tmp_path / "worker.log").open("wb") as log:
        master = subprocess.Popen(
            clock.argv(*worker),
            cwd=djproject,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while statuses(djproject) != {"RUNNING": 1}:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.05)
        clock.step(60)
        out, log_ = run(djproject, 'out = stuck(recovery.recover("requeue"))', clock=clock)
        assert out == [], log_
        assert statuses(djproject) == {"RUNNING": 1}
    finally:
        pids = tree(master.pid)
        os.killpg(master.pid, signal.SIGKILL)
        master.wait()
        wait_gone(pids)


def test_reused_pid_is_stuck_and_other_workers_tasks_are_never_touched(
    djproject: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    out, log = run(
        djproject,
        """
        claimer = ids.parse(ids.make(P["alive"], 1))
        reused = running(str(claimer._replace(start=claimer.start - 1)))  # an older holder's
        others = {
            "live pid, id from before starts": running(str(claimer._replace(start=None))),
            "other host": running("otherhost:1:1", started_ago=3600),
            "other host, our pid": running(f"otherhost:{P['dead']}:1"),
            "db_worker id": running(get_random_string(32), started_ago=3600),
            "not claimed by us last": running(ids.make(P["dead"], 1)),
        }
        DBTaskResult.objects.filter(id=others["not claimed by us last"]).update(
            worker_ids=[ids.make(P["dead"], 1), "otherhost:5:1"]
        )
        before = {name: row(i) for name, i in others.items()}
        found = stuck(recovery.find_stuck())
        acted = stuck(recovery.recover("requeue"))
        out = {
            "reused": reused, "found": found, "acted": acted, "reused_row": row(reused),
            "before": before, "after": {name: row(i) for name, i in others.items()},
        }
        """,
        alive=sleeper.pid,
        dead=dead_pid(),
    )
    reason = f"pid {sleeper.pid} now belongs to another program"
    assert [(t["id"], t["reason"]) for t in out["found"]] == [(out["reused"], reason)]
    assert out["acted"] == out["found"]
    assert out["reused_row"]["status"] == "READY"
    assert out["after"] == out["before"]
    assert all(r["status"] == "RUNNING" for r in out["after"].values())
    assert f"requeued task {out['reused']} (testapp.tasks.add): {reason}" in log


# Run as pid 1 of a new pid namespace: makes the next pid there ``want``, starts a process that
# prints the worker id it would claim with, and keeps it alive until stdin closes.
IN_NAMESPACE = """
import subprocess, sys
with open("/proc/sys/kernel/ns_last_pid", "w") as f:
    f.write(str(int(sys.argv[1]) - 1))
code = "import os, sys; from backends.taskworker import ids; "
code += "print(ids.make(os.getpid(), 1), flush=True); sys.stdin.read()"
subprocess.run([sys.executable, "-c", code])
"""


@pytest.fixture
def other_namespace() -> Iterator[str]:
    """The worker id of a live process in another pid namespace with our hostname (as in a
    second container) whose pid, in our namespace, is dead."""
    require("unshare", None if shutil.which("unshare") else "not on PATH (a second pid namespace)")
    pid = dead_pid()
    unshare = ["unshare", "--pid", "--fork", "--mount-proc"]
    proc = subprocess.Popen(
        [*unshare, sys.executable, "-c", IN_NAMESPACE, str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        require("a pid namespace", f"cannot make one here: {proc.communicate()[1].strip()[:200]}")
    yield line
    proc.communicate("", timeout=10)


def test_a_dead_pid_of_another_container_or_boot_is_not_ours(
    djproject: Path, other_namespace: str
) -> None:
    """Same hostname, a pid dead here, but another pid namespace or boot: never requeued."""
    theirs = ids.parse(other_namespace)
    assert theirs is not None and theirs.host == ids.this_host()
    assert not psutil.pid_exists(theirs.pid) and theirs.scope != ids.this_scope()
    other_boot = str(theirs._replace(scope=ids.scope_of("another-boot-id", 4026531836, 4026531834)))
    out, _ = run(
        djproject,
        """
        theirs = running(P["theirs"])
        other_boot = running(P["other_boot"])
        ours = running(ids.make(P["dead"], 1))
        acted = stuck(recovery.recover("requeue"))
        out = {"acted": [t["id"] for t in acted], "ours": ours,
               "statuses": [row(i)["status"] for i in (theirs, other_boot, ours)]}
        """,
        theirs=other_namespace,
        other_boot=other_boot,
        dead=theirs.pid,
    )
    assert out["acted"] == [out["ours"]]
    assert out["statuses"] == ["RUNNING", "RUNNING", "READY"]


def test_old_ids_without_a_scope_are_never_touched(djproject: Path) -> None:
    """An id of a version before scopes may come from any container with our hostname, so its
    dead pid proves nothing; whether its claim is older than this boot only the wall clock
    could tell, and a step of the clock moves the boot time: even a claim a day before the
    boot stays RUNNING."""
    out, _ = run(
        djproject,
        """
        import psutil
        old = f"{ids.this_host()}:{P['dead']}:1"
        recent = running(old)
        up = timezone.now().timestamp() - psutil.boot_time()
        before_boot = running(old, started_ago=up + 86400)
        out = {"found": stuck(recovery.find_stuck()), "acted": stuck(recovery.recover("requeue")),
               "statuses": [row(i)["status"] for i in (recent, before_boot)]}
        """,
        dead=dead_pid(),
    )
    assert (out["found"], out["acted"]) == ([], [])
    assert out["statuses"] == ["RUNNING", "RUNNING"]


def test_requeued_task_runs_again_in_a_real_db_worker(djproject: Path, tmp_path: Path) -> None:
    pid = dead_pid()
    record = tmp_path / "record.txt"
    out, log = run(
        djproject,
        """
        task_id = running(ids.make(P["pid"], 2), task=tasks.record, args=(P["record"], "once"))
        claimed = row(task_id)
        acted = stuck(recovery.recover("requeue"))
        ready = DBTaskResult.objects.ready().filter(id=task_id).exists()
        out = {"id": task_id, "claimed": claimed, "acted": acted, "row": row(task_id),
               "ready": ready}
        """,
        pid=pid,
        record=str(record),
    )
    dead_id = out["claimed"]["worker_ids"][0]
    assert [t["id"] for t in out["acted"]] == [out["id"]]
    assert out["row"]["status"] == "READY"
    assert out["row"]["started_at"] is None
    assert out["row"]["worker_ids"] == [dead_id]
    assert out["ready"], "a requeued row must pass django-tasks-db's ready() filter"
    assert f"requeued task {out['id']} (testapp.tasks.record): pid {pid} is gone" in log

    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", *DB_WORKER_ARGS],
        cwd=djproject,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr
    after, _ = run(djproject, "out = row(P['id'])", id=out["id"])
    assert after["status"] == "SUCCESSFUL"
    assert after["return_value"] == "once"
    assert after["worker_ids"][0] == dead_id
    assert len(after["worker_ids"]) == 2
    assert record.read_text() == "once\n"


def test_mark_failed_records_worker_died(djproject: Path) -> None:
    out, log = run(
        djproject,
        """
        by_hand = running(ids.make(P["pid"], 1))
        by_policy = running(ids.make(P["pid"], 2))
        changed = recovery.mark_failed([by_hand], "the OOM killer took it")
        acted = stuck(recovery.recover("fail"))
        error = DBTaskResult.objects.get(id=by_hand).task_result.errors[0]
        out = {
            "changed": changed, "acted": acted, "by_hand": row(by_hand),
            "by_policy": row(by_policy), "by_policy_id": by_policy,
            "resolves": error.exception_class is recovery.WorkerDied,
        }
        """,
        pid=dead_pid(),
    )
    assert out["changed"] == 1
    assert [t["id"] for t in out["acted"]] == [out["by_policy_id"]]
    reason = out["acted"][0]["reason"]
    for failed, why in ((out["by_hand"], "the OOM killer took it"), (out["by_policy"], reason)):
        assert failed["status"] == "FAILED"
        assert failed["finished_at"] is not None
        assert failed["exception_class_path"] == "backends.taskworker.recovery.WorkerDied"
        assert failed["traceback"].splitlines()[-1] == f"WorkerDied: {why}"
        assert len(failed["worker_ids"]) == 1
    assert out["resolves"], "django's TaskError.exception_class must import WorkerDied"
    assert f"failed task {out['by_policy_id']} (testapp.tasks.add): {reason}" in log


def test_only_rows_still_running_are_changed(djproject: Path) -> None:
    out, _ = run(
        djproject,
        """
        finished = running(ids.make(P["pid"], 1))
        r = DBTaskResult.objects.get(id=finished)
        r.set_successful(3)
        before = row(finished)
        out = {
            "requeue": recovery.requeue([finished]),
            "fail": recovery.mark_failed([finished], "late"),
            "empty": recovery.requeue([]) + recovery.mark_failed([], "nothing"),
            "before": before, "after": row(finished),
        }

        # Recovered by someone else and claimed again by a live worker between our look and
        # our write: recover() must not take it from that worker.
        raced = running(ids.make(P["pid"], 2))
        real_find = recovery.find_stuck

        def find_then_lose_the_race(*args, **kwargs):
            found = real_find(*args, **kwargs)
            recovery.requeue([raced])
            DBTaskResult.objects.get(id=raced).claim(ids.make(os.getpid(), 1))
            return found

        recovery.find_stuck = find_then_lose_the_race
        out["raced_acted"] = stuck(recovery.recover("requeue"))
        out["raced"] = row(raced)
        """,
        pid=dead_pid(),
    )
    assert (out["requeue"], out["fail"], out["empty"]) == (0, 0, 0)
    assert out["after"] == out["before"]
    assert out["after"]["status"] == "SUCCESSFUL"
    assert out["raced_acted"] == []
    assert out["raced"]["status"] == "RUNNING"
    assert len(out["raced"]["worker_ids"]) == 2


def test_pids_filter(djproject: Path, sleeper: subprocess.Popen[bytes]) -> None:
    first, second = dead_pid(), dead_pid()
    out, _ = run(
        djproject,
        """
        a = running(ids.make(P["first"], 1))
        b = running(ids.make(P["second"], 1))
        alive = running(ids.make(P["alive"], 1))
        ids_of = lambda found: sorted(t.id for t in found)
        out = {
            "a": a, "b": b,
            "all": ids_of(recovery.find_stuck()),
            "first": ids_of(recovery.find_stuck(pids=[P["first"]])),
            "alive": ids_of(recovery.find_stuck(pids={P["alive"]})),
            "none": ids_of(recovery.find_stuck(pids=())),
            "recovered": ids_of(recovery.recover("fail", pids=[P["second"], 999999])),
            "statuses": [row(i)["status"] for i in (a, b, alive)],
        }
        """,
        first=first,
        second=second,
        alive=sleeper.pid,
    )
    assert out["all"] == sorted([out["a"], out["b"]])
    assert out["first"] == [out["a"]]
    assert out["alive"] == []
    assert out["none"] == []
    assert out["recovered"] == [out["b"]]
    assert out["statuses"] == ["RUNNING", "FAILED", "RUNNING"]


def test_unknown_policy_names_both_choices() -> None:
    with pytest.raises(ValueError, match="'requeue' or 'fail'") as raised:
        recovery.recover("explode")
    assert "explode" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_importing_recovery_loads_no_ui_and_needs_no_settings() -> None:
    code = (
        "import sys, backends.taskworker.recovery\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_worker_ids_fit_django_tasks_db_and_parse_back(djproject: Path) -> None:
    """On a host whose name is as long as Linux allows (its own UTS namespace), the longest
    id still passes db_worker's validate_worker_id and parses back to what was made."""
    require("unshare", None if shutil.which("unshare") else "not on PATH (a UTS namespace)")
    code = (
        "import django; django.setup()\n"
        "from django_tasks_db.management.commands.db_worker import validate_worker_id\n"
        "from backends.taskworker import ids\n"
        "longest = 10 ** ids.START_DIGITS - 1\n"
        "made = str(ids.WorkerId(ids.this_host(), 4194304, 9999, ids.this_scope(), longest))\n"
        "parsed = ids.parse(validate_worker_id(made))\n"
        "assert str(parsed) == made and parsed.start == longest, parsed\n"
        "print(made, parsed.label, parsed.scope == ids.this_scope(), ids.is_local(parsed))\n"
    )
    name = "h" * 64  # HOST_NAME_MAX
    done = subprocess.run(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            f'hostname {name} && exec "$0" -c "$1"',
            sys.executable,
            code,
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(djproject)]),
            "DJANGO_SETTINGS_MODULE": "djproject.settings",
        },
    )
    if done.returncode and ("hostname" in done.stderr or "unshare" in done.stderr):
        require("a UTS namespace", f"cannot set a hostname here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    made, label, same_scope, local = done.stdout.split()
    assert len(made) <= ids.MAX_LENGTH and made.startswith("hhhh")
    assert label == made.partition("@")[0] and label.endswith(":4194304:9999")
    assert (same_scope, local) == ("True", "True")
    assert ids.parse("db_worker-random-id") is None
    assert ids.parse("host:12:3@not-hex!") is None
    assert ids.parse("host:12:3") == ids.WorkerId("host", 12, 3, None)  # an id of before
