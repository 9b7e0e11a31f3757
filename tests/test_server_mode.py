"""Server mode from the command line, end to end: ``prodserver-tui up`` (twice, with a broken
entry, after a SIGKILLed engine), ``status [--json]``, ``logs``, ``down`` with a running task.
Real processes, real sockets, real files. Raw protocol clients are in test_server_clients.py,
the consoles in tmux in test_attach.py.

Most checks share one engine (``shared``), each recording the pids of its children first and
comparing after: a restart anywhere would change them. What needs an engine of its own (a
kill, a task project, a restart) gets one. Every site stops its engine at the end and fails
when any process it ever started is left (``servermode.Site.close``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator

import psutil
import pytest
from helpers import DJPROJECT, WORKER, enqueue, free_port, get, migrated_copy, statuses, wait_gone
from servermode import SETTINGS, Raw, Site, code, gaps, py, running, shared_site, wait_until


@pytest.fixture(scope="module")
def shared() -> Iterator[Site]:
    with shared_site() as site:
        yield site


# -- up ----------------------------------------------------------------------------------------


def test_a_second_up_says_already_running_and_changes_nothing(shared: Site) -> None:
    before = running(shared)
    pid = shared.engine_pid()
    done = shared.up()
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"prodserver-tui: already running (pid {pid}, socket {shared.place.socket}); "
        "nothing changed\n"
    )
    assert shared.engine_pid() == pid
    assert running(shared) == before


def test_up_with_an_entry_in_config_error_exits_1_and_runs_the_others() -> None:
    site = Site({"chatty": py("chatty", "5"), "broken": "{'BACKEND': 'no.such.Backend'}"})
    try:
        done = site.up()
        assert done.returncode == 1, done.stdout + done.stderr
        assert re.search(r"^broken\s+config-error .*no\.such\.Backend", done.stdout, re.M)
        assert re.search(r"^chatty\s+running\s+pid \d+", done.stdout, re.M), done.stdout
        chatty_pid, _ = running(site)["chatty"]
        assert chatty_pid is not None and psutil.pid_exists(chatty_pid)
    finally:
        site.close()


# -- the engine killed -------------------------------------------------------------------------


def test_a_killed_engine_leaves_no_orphan_and_a_stale_socket_that_up_replaces() -> None:
    """SIGKILL the engine: its watchdog stops every tree, gunicorn's workers and grandchildren
    in and out of their parent's group included. Its socket file stays behind: clients say no
    engine runs, and the next ``up`` replaces the socket and runs as if nothing happened."""
    site = Site({})
    port = free_port()
    project = site.root / "djproject"
    shutil.copytree(DJPROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    site.use_project(
        project,
        f"""from djproject.settings import *  # noqa: F403

PRODUCTION_PROCESSES = {{
    "web": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{"bind": "127.0.0.1:{port}", "workers": "2"}},
    }},
    "grouped": {{"BACKEND": "backends.command.Command", "ARGS": {py("spawns_grandchild")}}},
    "escapee": {{
        "BACKEND": "backends.command.Command",
        "ARGS": {py("spawns_grandchild", "escape")},
    }},
}}
""",
    )
    try:
        assert site.up().returncode == 0
        engine = site.engine_pid()
        assert engine is not None
        # engine, watchdog, gunicorn and 2 workers, grouped, escapee and their grandchildren
        wait_until(lambda: len(site.record()) >= 9, what="the whole family")
        wait_until(lambda: get(f"http://127.0.0.1:{port}/") == "ok", what="gunicorn to serve")
        family = site.record()
        os.kill(engine, signal.SIGKILL)
        assert wait_gone(family, timeout=30) == [], family
        assert stat.S_ISSOCK(os.lstat(site.place.socket).st_mode)  # stale, left behind
        status = site.cli("status")
        assert status.returncode == 1
        assert status.stderr == (
            f"prodserver-tui: no engine is running for {site.project} "
            f"(socket {site.place.socket}): start one with `prodserver-tui up`\n"
        )
        again = site.up()
        assert again.returncode == 0 and again.stderr == ""
        lines = again.stdout.splitlines()
        assert [line.split()[:2] for line in lines[:-1]] == [
            [name, "running"] for name in ("web", "grouped", "escapee")
        ], again.stdout
        assert lines[-1].startswith(f"engine pid {site.engine_pid()}, socket {site.place.socket}")
        assert site.engine_pid() != engine
    finally:
        site.close()


# -- down --------------------------------------------------------------------------------------

TASK_PROJECT = f"""
from djproject.settings import *  # noqa: F403

PRODUCTION_PROCESSES = {{
    "worker": {{
        "BACKEND": {WORKER!r},
        "ARGS": {{"threads": "2", "no-startup-delay": None, "interval": "0.2"}},
        "GRACE": 30,
    }},
}}
"""


def test_down_waits_for_a_running_task(monkeypatch: pytest.MonkeyPatch) -> None:
    site = Site({})
    db = site.root / "db.sqlite3"
    monkeypatch.setenv("DJPROJECT_DB", str(db))
    site.env["DJPROJECT_DB"] = str(db)
    try:
        site.use_project(migrated_copy(site.root), TASK_PROJECT)
        assert site.up().returncode == 0
        enqueue(site.project, "tasks.sleep.enqueue(5)")
        wait_until(lambda: statuses(site.project).get("RUNNING") == 1, 30, "the task to run")
        family = site.record()
        down = site.cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert down.stdout.splitlines()[-1] == "everything stopped"
        assert statuses(site.project) == {"SUCCESSFUL": 1}
        assert wait_gone(family, timeout=10) == []
        assert site.engine_pid() is None
    finally:
        site.close()


# -- commands and their answers ----------------------------------------------------------------


def logged(site: Site, name: str, n: int) -> list[str]:
    """The last ``n`` lines of an entry that ``logs`` answers (from its log files)."""
    with Raw(site.place) as raw:
        kept = raw.call("logs", names=[name], n=n)["lines"][name]
        return [text for _stream, _at, run in kept["runs"] for text in run]


def outs(texts: list[str]) -> list[int]:
    return [int(text[4:]) for text in texts if text.startswith("out ")]


def test_logs_shows_history(shared: Site) -> None:
    wait_until(lambda: len(logged(shared, "chatty", 1100)) == 1100, what="1100 lines on disk")
    done = shared.cli("logs", "chatty", "-n", "1000")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1000
    said = [re.fullmatch(r"\d\d:\d\d:\d\d chatty \| ((out|err) \d+|-- .*)", line) for line in lines]
    assert all(said), [line for line, m in zip(lines, said, strict=True) if not m]
    numbers = outs([m[1] for m in said if m])
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for follow in ([], ["-f"]):  # a reader that leaves: the command ends, quietly
        piped = subprocess.run(
            ["sh", "-c", '"$@" | head -n 1', "sh", *shared.argv("logs", "-n", "5000", *follow)],
            cwd=shared.project,
            env=shared.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert piped.stderr == "" and len(piped.stdout.splitlines()) == 1, piped
    every = shared.cli("logs", "-n", "1000")
    assert re.search(r"^\S+ escapee +\| child \d+ grandchild \d+$", every.stdout, re.M)
    unknown = shared.cli("logs", "nosuch")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "prodserver-tui: no entry named 'nosuch': this engine runs chatty, escapee, counter\n"
    )


def test_history_outlives_an_engine_restart() -> None:
    """The first engine's output stays in its log files: ``logs -n`` of the next engine
    shows both runs, and a fresh subscriber gets the end of the first run first."""
    site = Site({"chatty": py("chatty", "200")})
    try:
        assert site.up().returncode == 0
        wait_until(lambda: len(outs(logged(site, "chatty", 400))) >= 200, what="200 lines")
        assert site.cli("down").returncode == 0
        assert site.up().returncode == 0
        with Raw(site.place) as fresh:
            fresh.call("subscribe")
            fresh.pump(lambda: 5 in outs(fresh.texts.get("chatty", [])), what="out 5 again")
        done = site.cli("logs", "chatty", "-n", "5000")
    finally:
        site.close()
    numbers = outs([line.split(" | ", 1)[1] for line in done.stdout.splitlines()])
    again = numbers.index(1, 1)  # chatty counts from 1 at each start
    assert again >= 200 and numbers[:again] == list(range(1, again + 1))
    assert numbers[again:] == list(range(1, len(numbers) - again + 1))
    seen = outs(fresh.texts["chatty"])
    second = seen.index(1, 1)  # what it got of the first run, then the second run
    assert seen[second - 1] == again and gaps(seen[:second]) == [] and second > 100


PROCESS_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "kind": str,
    "state": str,
    "detail": str,
    "pid": int,
    "started_at": float,
    "restarts": int,
    "last_exit": (type(None), dict),
    "cpu_percent": float,
    "rss_bytes": int,
    "processes": int,
    "url": type(None),
    "healthy": type(None),
    "knobs": dict,
    "wake_up": list,
}


def test_status_json_has_the_documented_shape(shared: Site) -> None:
    """Exactly the keys docs/protocol.md shows, of its types; the counter is restarted first,
    so that a last exit is shown too."""
    with Raw(shared.place) as raw:
        assert raw.call("restart", names=["counter"])["ok"]

        def counter_state() -> str:
            [counter] = [p for p in raw.call("view")["view"]["processes"] if p["name"] == "counter"]
            return str(counter["state"])

        wait_until(lambda: counter_state() == "running", what="the counter to run again")
    done = shared.cli("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status) == {"schema", "engine", "processes"} and status["schema"] == 1
    engine = status["engine"]
    assert engine == {
        "pid": shared.engine_pid(),
        "version": engine["version"],
        "socket": str(shared.place.socket),
        "project": str(shared.project),
        "settings_module": SETTINGS,
        "detached": True,
    }
    assert isinstance(engine["version"], str)
    assert [p["name"] for p in status["processes"]] == ["chatty", "escapee", "counter"]
    for process in status["processes"]:
        assert set(process) == set(PROCESS_KEYS)
        for key, kind in PROCESS_KEYS.items():
            assert isinstance(process[key], kind), (key, process[key])
        assert process["state"] == "running" and process["knobs"] == {}
    exits = {p["name"]: p["last_exit"] for p in status["processes"]}
    assert exits == {"chatty": None, "escapee": None, "counter": {"code": None, "signal": 15}}


def test_an_answer_too_large_for_a_frame_is_refused_not_left_waiting() -> None:
    """60,000 lines of 100 bytes (6 MB) on disk, `logs -n 100000`: one frame cannot hold the
    answer, and the client must hear so, not wait for ever."""
    big = code(
        """
        import sys, time
        for i in range(60000):
            sys.stdout.write(f"{i:010d} " + "y" * 89 + "\\n")
        sys.stdout.flush()
        time.sleep(3600)
        """
    )
    site = Site({"big": big})
    try:
        assert site.up().returncode == 0
        log = site.place.state / "logs" / "big.log"
        wait_until(lambda: log.exists() and log.stat().st_size > 6_000_000, what="6 MB on disk")
        done = site.cli("logs", "big", "-n", "100000", timeout=30)
        assert done.returncode == 1
        assert "ask for less" in done.stderr, done.stderr
        assert site.cli("logs", "big", "-n", "10").returncode == 0  # the engine goes on
    finally:
        site.close()
