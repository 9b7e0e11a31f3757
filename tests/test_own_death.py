"""The console's own death: however ``prodserver-tui`` ends, nothing it started outlives it.

Every scenario runs the real command in a real pseudo-terminal (a private tmux server), full
screen or ``--headless``, over the test Django project with a task worker busy on a task, a
child whose grandchild left its process group, and a child that ignores SIGTERM. Every
descendant pid is recorded with psutil while it runs, then the console dies one of four ways:

SIGTERM
    The console stops everything itself, as a quit does: each entry's stop signal to its
    group, its GRACE, then SIGKILL. Headless mode does the same on SIGHUP and on its terminal
    closing (SIGHUP from the kernel, then EIO on every write).
SIGHUP, terminal closed (full screen)
    An SSH drop. Textual can block for ever writing to a terminal that vanished, so the
    console leaves at once (``tui.app.hang_up``) and its watchdog stops everything exactly as
    a quit would.
SIGKILL
    The console can do nothing; the watchdog, in its own session, sees its pipe close and
    stops everything the same way.

So on every path a running task that fits in the worker's grace period *finishes* after the
console is gone (asserted: SUCCESSFUL, ``finished_at`` after the death). A task that does not
fit is SIGKILLed with its worker process when the grace period ends, on any path, and stays
RUNNING: it is then *detectable as stuck* (``find_stuck``: its worker's pid is dead), and the
worker's next start requeues it. When the watchdog is SIGKILLed together with the console,
each child's parent-death signal kills it, and what it leaves notices by itself (gunicorn's
workers, the task worker's processes); a killed watchdog alone is replaced by the console.

Shutdown never hangs: a child that ignores SIGTERM is SIGKILLed when its GRACE is over, and
the screen counts the seconds down meanwhile. The watchdog stops each child by its own rule
(signal, grace, whole group or main process alone) so no entry's short grace cuts another's
drain short. Durations are measured, never asserted here:
``bench/own_death.py`` prints them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from clockstep import SteppedClock
from conftest import FIXTURES, fixture_argv
from helpers import (
    enqueue,
    free_port,
    get,
    is_alive,
    migrated_copy,
    query,
    run_json,
    tree,
    wait_gone,
)
from needs import needs

from backends.procid import started
from tui.engine.watchdog_client import start_watchdog

REPO = Path(__file__).resolve().parent.parent
SETTINGS = "own_death"  # the settings module written into the project copy
SHORT_TASK = 1.5  # seconds: running when the console dies, done well within the worker's grace
DEATHS = ("SIGKILL", "SIGTERM", "SIGHUP", "terminal closed")

PROCESSES = f"""
import os
import sys

from djproject.settings import *  # noqa: F403

F = {str(FIXTURES) + "/"!r}
PRODUCTION_PROCESSES = {{
    "worker": {{
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {{"threads": "2", "no-startup-delay": None, "interval": "0.2"}},
        "GRACE": float(os.environ.get("OWN_DEATH_GRACE", "10")),
    }},
    "escapee": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, F + "spawns_grandchild.py", "escape"],
    }},
    "stubborn": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, F + "ignores_sigterm.py"],
        "GRACE": 1,
    }},
}}
"""
# watchdog, worker master, its worker process, escapee, its grandchild, stubborn
DESCENDANTS = 6

pytestmark = needs("tmux", lambda: None if shutil.which("tmux") else "not on PATH (a real pty)")
# The pane's title; the log line written when stopping began says the same once, frozen.
COUNTDOWN = re.compile(r"(?<!-- stopping: )waiting for exit, (\d+) s before SIGKILL")


class Terminal:
    """One command in a real pseudo-terminal: a private tmux server, 160x48.

    Closing it kills the server, which closes the pty's master side: the kernel hangs the
    terminal up, exactly what an SSH drop or a closed terminal window does.
    """

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.socket = str(cwd / "tmux.socket")  # its own server, gone with the folder
        self.env = env  # a fresh server takes the environment of the client that starts it
        conf = cwd / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\n")  # the last screen stays readable
        size = ("-x", "160", "-y", "48")
        self.tmux("-f", str(conf), "new-session", "-d", "-c", str(cwd), *size, "--", *argv)
        self.pid = int(self.tmux("display-message", "-p", "#{pane_pid}"))

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, screen := self.screen()):
            assert time.monotonic() < deadline, f"no {pattern!r} on the screen:\n{screen}"
            time.sleep(0.1)
        return screen

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def console_env(db: Path, **extra: str) -> dict[str, str]:
    # Not our tmux, nor settings of whoever runs the tests.
    dropped = ("DJANGO_SETTINGS_MODULE", "TMUX", "TMUX_PANE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, "PYTHONPATH": str(REPO), "DJPROJECT_DB": str(db), **extra}


def console_argv(settings: str, headless: bool = False) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "--settings", settings] + (
        ["--headless"] if headless else []
    )


def start_logged(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """A console (headless) whose every word goes to ``log``, for the assertions to quote."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )


def make_template(root: Path) -> Path:
    """The test project under ``root``, migrated, with one short task READY."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJPROJECT_DB", str(root / "db.sqlite3"))
        project = migrated_copy(root)
        (project / f"{SETTINGS}.py").write_text(PROCESSES)
        enqueue(project, f"tasks.sleep.enqueue({SHORT_TASK})")
    return project


def copy_project(template: Path, root: Path) -> Path:
    """A private copy of the template, database included (``helpers.query`` reads it)."""
    shutil.copytree(template, root / "djproject")
    shutil.copy(template.parent / "db.sqlite3", root / "db.sqlite3")
    return root / "djproject"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrating and enqueueing take seconds each: once per module, then each test copies."""
    return make_template(tmp_path_factory.mktemp("own-death"))


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    return copy_project(template, tmp_path)


@dataclass(frozen=True)
class Death:
    """What one death left behind, for the assertions and for ``bench/own_death.py``."""

    descendants: list[int]  # recorded while the console ran
    survivors: list[int]  # of those, still alive at the deadline
    seconds: float  # from the death until the last descendant was gone
    killed_at: float  # time.time() of the death
    tasks: list[tuple[str, str, str | None]]  # id, status, finished_at


def die(project: Path, headless: bool, death: str, grace: float = 10.0, busy: int = 1) -> Death:
    """Run the console until ``busy`` tasks run, record its tree, end it by ``death``."""
    env = console_env(project.parent / "db.sqlite3", OWN_DEATH_GRACE=str(grace))
    terminal = Terminal(console_argv(SETTINGS, headless), project, env)
    try:
        pids = busy_tree(terminal, project, busy)
        killed_at, started = time.time(), time.monotonic()
        if death == "terminal closed":
            terminal.close()
        else:
            os.kill(terminal.pid, signal.Signals[death])
        survivors = wait_gone(pids, timeout=60)
        seconds = time.monotonic() - started
    finally:
        terminal.close()
    tasks = query(project, "select id, status, finished_at from django_tasks_database_dbtaskresult")
    return Death(pids, survivors, seconds, killed_at, tasks)


def busy_tree(terminal: Terminal, project: Path, busy: int) -> list[int]:
    """The console and every descendant, once the whole family is up and tasks run."""
    deadline = time.monotonic() + 60
    while True:
        pids = tree(terminal.pid)
        running = query(
            project,
            "select count(*) from django_tasks_database_dbtaskresult where status = ?",
            "RUNNING",
        )[0][0]
        if running >= busy and len(pids) > DESCENDANTS:
            return pids
        if time.monotonic() > deadline or not is_alive(terminal.pid):
            raise AssertionError(
                f"never busy: {len(pids)} processes, {running} tasks running\n{terminal.screen()}"
            )
        time.sleep(0.05)


def described(pids: list[int]) -> list[str]:
    """Survivors by command line, so a failure says what was left behind."""
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(f"{pid} {shlex.join(psutil.Process(pid).cmdline())}")
    return found


def find_stuck(project: Path) -> list[dict[str, str]]:
    """``recovery.find_stuck`` in the project's own Django (settings load once per process)."""
    code = (
        "import dataclasses, json, django\n"
        "django.setup()\n"
        "from backends.taskworker.recovery import find_stuck\n"
        "print(json.dumps([dataclasses.asdict(t) for t in find_stuck()], default=str))\n"
    )
    env = console_env(project.parent / "db.sqlite3", DJANGO_SETTINGS_MODULE="djproject.settings")
    return run_json([sys.executable, "-c", code], project, env)  # type: ignore[no-any-return]


def after(finished_at: str | None, moment: float) -> bool:
    """Django keeps aware datetimes in SQLite as naive UTC text."""
    if finished_at is None:
        return False
    return datetime.fromisoformat(finished_at).replace(tzinfo=UTC).timestamp() > moment


@pytest.mark.parametrize("death", DEATHS)
@pytest.mark.parametrize("headless", [False, True], ids=["console", "headless"])
def test_nothing_survives_and_the_running_task_finishes(
    project: Path, headless: bool, death: str
) -> None:
    gone = die(project, headless, death)
    assert len(gone.descendants) > DESCENDANTS, gone.descendants
    assert gone.survivors == [], described(gone.survivors)
    [(_id, status, finished_at)] = gone.tasks
    assert status == "SUCCESSFUL"
    assert after(finished_at, gone.killed_at), "the task ended before the console did"


def test_a_task_longer_than_the_grace_is_detectable_as_stuck(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL, and the worker's grace (1 s) too short for a 60 s task: the watchdog must
    SIGKILL the worker, so the task stays RUNNING; find_stuck knows its worker is dead."""
    monkeypatch.setenv("DJPROJECT_DB", str(project.parent / "db.sqlite3"))
    enqueue(project, "tasks.sleep.enqueue(60)")
    gone = die(project, headless=False, death="SIGKILL", grace=1.0, busy=2)
    assert gone.survivors == [], described(gone.survivors)
    stuck = {uuid.UUID(task["id"]): task for task in find_stuck(project)}
    for task_id, status, _finished_at in gone.tasks:  # finished or detectable, never lost
        assert status == "SUCCESSFUL" or uuid.UUID(task_id) in stuck, gone.tasks
    running = [uuid.UUID(t[0]) for t in gone.tasks if t[1] == "RUNNING"]
    assert running, "the 60 s task cannot have finished"
    assert all(re.fullmatch(r"pid \d+ is gone", stuck[t]["reason"]) for t in running), stuck


def test_shutdown_counts_down_then_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    """One q and nothing more: the screen counts the grace down, then SIGKILL ends it."""
    (tmp_path / "s.py").write_text(
        f"import sys\nSECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'stubborn': {{"
        f"'BACKEND': 'backends.command.Command', 'GRACE': 2, "
        f"'ARGS': [sys.executable, {str(FIXTURES / 'ignores_sigterm.py')!r}]}}}}\n"
    )
    # tmux may lose a dead pane's exit status and last output: the shell keeps the code.
    code = tmp_path / "exit-code"
    script = 'f=$1; shift; "$@"; echo $? > "$f.new" && mv "$f.new" "$f"'
    argv = ["sh", "-c", script, "sh", str(code), *console_argv("s")]
    terminal = Terminal(argv, tmp_path, console_env(tmp_path / "unused.sqlite3"))
    try:
        deadline = time.monotonic() + 30
        while "ignoring SIGTERM" not in terminal.screen():
            assert time.monotonic() < deadline, terminal.screen()
            time.sleep(0.1)
        pids = tree(terminal.pid)
        terminal.tmux("send-keys", "q")
        shown: list[int] = []
        while not code.exists():
            screen = terminal.screen()
            assert time.monotonic() < deadline, screen
            for left in COUNTDOWN.findall(screen):
                if not shown or shown[-1] != int(left):
                    shown.append(int(left))
            time.sleep(0.1)
    finally:
        terminal.close()
    assert len(shown) >= 2 and shown == sorted(shown, reverse=True), shown
    assert code.read_text() == "1\n"  # something had to be killed
    assert wait_gone(pids, timeout=10) == []


def test_the_watchdog_signals_the_main_process_alone_when_the_backend_says_so() -> None:
    """Celery's pool processes die of a SIGTERM of their own (running tasks are lost), while
    its main process alone takes it as a warm shutdown, so its backend stops the main process
    only (``stop_group = False``). The watchdog must stop such an entry the same way: its
    group hears nothing until the grace period is over, then SIGKILL."""
    watchdog = start_watchdog()
    with subprocess.Popen(
        fixture_argv("spawns_grandchild"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None and watchdog.stdin is not None
            grandchild = int(parent.stdout.readline().split()[3])  # "child PID grandchild PID"
            how = f"{int(signal.SIGTERM)} 3 0"  # stop signal, grace, not to the group
            watchdog.stdin.write(b"not a registration\n")  # skipped: the guard stays up
            watchdog.stdin.write(f"{parent.pid} {started(parent.pid)} {how}\n".encode())
            watchdog.stdin.close()  # as if the console died
            assert parent.wait(timeout=10) == -signal.SIGTERM
            assert is_alive(grandchild), "the group got the stop signal too"
            assert wait_gone([grandchild], timeout=20) == []  # SIGKILL after the grace
            assert watchdog.wait(timeout=10) == 0
        finally:
            with contextlib.suppress(OSError):
                os.killpg(parent.pid, signal.SIGKILL)
            watchdog.kill()
            watchdog.wait()


def test_headless_under_nohup_outlives_the_session(tmp_path: Path) -> None:
    """``nohup prodserver-tui --headless`` asks to survive the SSH session: a SIGHUP ignored at
    start stays ignored and the children keep running; SIGTERM still stops everything."""
    (tmp_path / "s.py").write_text(
        f"import sys\nSECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'chatty': {{"
        f"'BACKEND': 'backends.command.Command', "
        f"'ARGS': [sys.executable, {str(FIXTURES / 'chatty.py')!r}, '20']}}}}\n"
    )
    argv = ["sh", "-c", 'trap "" HUP; exec "$@"', "sh", *console_argv("s", headless=True)]
    terminal = Terminal(argv, tmp_path, console_env(tmp_path / "unused.sqlite3"))

    def said() -> tuple[int, str]:
        """The last "out N" of chatty so far, and everything on the terminal."""
        text = terminal.tmux("capture-pane", "-p", "-S", "-")
        return max(map(int, re.findall(r"\| out (\d+)", text)), default=0), text

    def wait_for_line(number: int) -> str:
        deadline = time.monotonic() + 30
        while (said_now := said())[0] < number:
            assert time.monotonic() < deadline, said_now[1]
            time.sleep(0.05)
        return said_now[1]

    try:
        wait_for_line(3)
        pids = tree(terminal.pid)
        os.kill(terminal.pid, signal.SIGHUP)
        text = wait_for_line(said()[0] + 10)  # half a second more of output
        assert "-- stopping" not in text
        os.kill(terminal.pid, signal.SIGTERM)
        assert wait_gone(pids, timeout=20) == []
    finally:
        terminal.close()


# -- when the watchdog is gone too -------------------------------------------------------------

BOTH_DEAD = f"""
import os
import sys

from djproject.settings import *  # noqa: F403

F = {str(FIXTURES) + "/"!r}
PRODUCTION_PROCESSES = {{
    "worker": {{
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {{"threads": "2", "no-startup-delay": None, "interval": "0.2"}},
    }},
    "web": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{"bind": "127.0.0.1:" + os.environ["BOTH_DEAD_PORT"], "workers": "2",
                  "timeout": "4"}},
    }},
    "stubborn": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, F + "ignores_sigterm.py"],
    }},
}}
"""
# watchdog, worker master, its worker process, gunicorn master, 2 workers, stubborn
BOTH_DEAD_DESCENDANTS = 7


def watchdogs(console: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(console).children() if "tui.engine.watchdog" in p.cmdline()]


def test_nothing_survives_when_console_and_watchdog_are_both_sigkilled(project: Path) -> None:
    """The watchdog cannot help: each child's parent-death signal kills it with the console,
    and what they leave notices by itself (gunicorn's workers check their parent within their
    timeout; the task worker's processes drain when the pipe from their master closes)."""
    (project / "both_dead.py").write_text(BOTH_DEAD)
    env = console_env(project.parent / "db.sqlite3", BOTH_DEAD_PORT=str(free_port()))
    console = start_logged(
        console_argv("both_dead", headless=True), project, env, project.parent / "console.log"
    )
    try:
        deadline = time.monotonic() + 60
        while len(pids := tree(console.pid)) <= BOTH_DEAD_DESCENDANTS:
            assert time.monotonic() < deadline, (project.parent / "console.log").read_text()
            time.sleep(0.05)
        [watchdog] = watchdogs(console.pid)
        os.kill(console.pid, signal.SIGSTOP)  # it cannot start a new watchdog meanwhile
        watchdog.kill()
        os.kill(console.pid, signal.SIGKILL)
        assert wait_gone(pids, timeout=30) == [], described(pids)
    finally:
        with contextlib.suppress(OSError):
            os.kill(console.pid, signal.SIGKILL)
        console.wait()


def test_a_killed_watchdog_is_replaced_and_still_protects(tmp_path: Path) -> None:
    """SIGKILL the watchdog: every pane says so and a new one guards every live child. The
    grandchild here stays in its parent's group, where the parent-death signal cannot reach
    it: only a watchdog stops it when the console dies."""
    (tmp_path / "s.py").write_text(
        f"import sys\nSECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'parent': {{"
        f"'BACKEND': 'backends.command.Command', "
        f"'ARGS': [sys.executable, {str(FIXTURES / 'spawns_grandchild.py')!r}]}}}}\n"
    )
    out = tmp_path / "console.log"
    console = start_logged(
        console_argv("s", headless=True), tmp_path, console_env(tmp_path / "unused.sqlite3"), out
    )
    try:
        deadline = time.monotonic() + 30
        while len(pids := tree(console.pid)) < 4:  # console, watchdog, parent, grandchild
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        [first] = watchdogs(console.pid)
        first.kill()
        said = re.compile(rf"the watchdog \(pid {first.pid}\) killed by SIGKILL; a new one \(pid")
        while not said.search(out.read_text()):
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        [second] = watchdogs(console.pid)
        os.kill(console.pid, signal.SIGKILL)
        pids = [p for p in pids if p not in (first.pid, console.pid)]
        assert wait_gone(pids, timeout=20) == [], described(pids)
        second.wait(timeout=10)  # it did its job and left (not ours to reap: no exit code)
    finally:
        with contextlib.suppress(OSError):
            os.kill(console.pid, signal.SIGKILL)
        console.wait()


def test_the_watchdog_knows_a_process_by_pid_and_start_time() -> None:
    """A registration whose start time does not match the process now holding that pid is a
    reused pid: that process is left alone, while the one that matches is stopped. Start
    times are clock ticks since boot (/proc/PID/stat field 22), which a clock step cannot
    move; before, the wall-clock-derived psutil create_time was compared."""
    watchdog = start_watchdog()
    sleep = [sys.executable, "-c", "import time; time.sleep(10**6)"]
    with (
        subprocess.Popen(sleep, stdin=subprocess.DEVNULL, start_new_session=True) as ours,
        subprocess.Popen(sleep, stdin=subprocess.DEVNULL, start_new_session=True) as stranger,
    ):
        try:
            assert watchdog.stdin is not None
            for proc, shift in ((ours, 0), (stranger, 1)):
                line = f"{proc.pid} {started(proc.pid) + shift} {int(signal.SIGTERM)} 3 1\n"
                watchdog.stdin.write(line.encode())
            watchdog.stdin.close()  # as if the console died
            assert ours.wait(timeout=10) == -signal.SIGTERM
            assert watchdog.wait(timeout=10) == 0
            assert stranger.poll() is None, "a process with another start time was signalled"
        finally:
            for proc in (ours, stranger):
                proc.kill()
            watchdog.kill()
            watchdog.wait()


STEPPED = f"""
import os
import sys

from djproject.settings import *  # noqa: F403

PRODUCTION_PROCESSES = {{
    "web": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{"bind": "127.0.0.1:" + os.environ["STEPPED_PORT"], "workers": "2",
                  "timeout": "120"}},
    }},
    "escapee": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, {str(FIXTURES / "spawns_grandchild.py")!r}, "escape"],
    }},
}}
"""
# console, watchdog, gunicorn's master and 2 workers, escapee and its grandchild
STEPPED_TREE = 7


def test_a_clock_step_does_not_blind_the_watchdog(project: Path) -> None:
    """The wall clock steps 2 s forward while gunicorn serves, then the console is SIGKILLed:
    the watchdog still stops every tree. The main processes die of their parent-death
    signal; gunicorn's workers (``timeout`` 120) would notice only within a minute, and the
    escapee's grandchild, in a session of its own, never. The watchdog finds gunicorn's
    workers again in their group, but the grandchild only by the identity it recorded: when
    that identity was psutil's create time (boot time + ticks, and the boot time moves with
    the clock), the watchdog took it for gone and it outlived the console."""
    (project / "stepped.py").write_text(STEPPED)
    port = free_port()
    clock = SteppedClock(project.parent)
    env = console_env(project.parent / "db.sqlite3", STEPPED_PORT=str(port))
    console = start_logged(
        clock.argv(*console_argv("stepped", headless=True)),
        project,
        env,
        project.parent / "console.log",
    )
    try:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}/"
        while len(pids := tree(console.pid)) < STEPPED_TREE or get(url) != "ok":
            assert time.monotonic() < deadline, (project.parent / "console.log").read_text()
            time.sleep(0.05)
        # The watchdog learns of a grandchild that left its session from the sampler, once a
        # second, and nothing outside says when it did: two samples' time, then the step.
        time.sleep(2.5)
        clock.step(2)
        os.kill(console.pid, signal.SIGKILL)
        assert wait_gone(pids, timeout=10) == [], described(pids)
    finally:
        with contextlib.suppress(OSError):
            os.kill(console.pid, signal.SIGKILL)
        console.wait()


def test_a_hang_up_still_stops_each_child_gracefully(tmp_path: Path) -> None:
    """The terminal hangs up: the console must not leave before its children are stopped,
    or their parent-death signal SIGKILLs them; the watchdog gives each its stop signal.
    Meanwhile nobody reads their output: what they write then must not block them."""
    marker = tmp_path / "got-sigterm"
    code = (
        "import pathlib, signal, sys, time\n"
        "def bye(*_):\n"
        "    try:\n        print('x' * 2**20, flush=True)\n    except OSError:\n        pass\n"
        f"    pathlib.Path({str(marker)!r}).write_text('yes')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('waiting', flush=True)\n"
        "while True:\n    time.sleep(3600)\n"
    )
    (tmp_path / "s.py").write_text(
        f"import sys\nSECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'polite': {{"
        f"'BACKEND': 'backends.command.Command', 'ARGS': [sys.executable, '-c', {code!r}]}}}}\n"
    )
    terminal = Terminal(console_argv("s"), tmp_path, console_env(tmp_path / "unused.sqlite3"))
    try:
        deadline = time.monotonic() + 30
        while "waiting" not in terminal.screen():
            assert time.monotonic() < deadline, terminal.screen()
            time.sleep(0.1)
        pids = tree(terminal.pid)
        os.kill(terminal.pid, signal.SIGHUP)
        assert wait_gone(pids, timeout=20) == [], described(pids)
    finally:
        terminal.close()
    assert marker.exists(), "the child was killed, not stopped"
