"""A stalled screen or reader never stalls production.

The console's own output can stop being read at any moment: ``--headless | less`` paused, a
terminal nobody reads, the tmux server stopped, Ctrl+Z. Whatever it does, the children's pipes
are read on: a web server that logs every request keeps answering, signals are heard, an
exiting child's last words are kept, and headless output says how many lines it had to skip.

Every scenario runs the real command in a private tmux server over the test Django project:
gunicorn with one worker whose access log line is 4 KiB, on stderr beside its own notes (the
pipe fills after 16 requests nobody reads, and then its master cannot even log a SIGTERM), a
child talking 200 lines a second, and one that dies on cue with 300 lines and a FATAL line.
Headless output goes to a reader whose pipe holds one page, so pausing it is felt at once.
The web server is asked every 100 ms throughout each pause.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psutil
import pytest
from conftest import FIXTURES, fixture_argv
from helpers import DJPROJECT, free_port, tree, wait_gone
from needs import needs
from test_own_death import Terminal, console_argv, console_env, described

pytestmark = needs("tmux", lambda: None if shutil.which("tmux") else "not on PATH (a real pty)")

PAUSE = 3.0  # seconds each stall lasts
GRACE = 10.0  # every entry's; a stop during a stall must not need SIGKILL
SETTINGS = "stall"
PROCESSES = """
import sys

from djproject.settings import *  # noqa: F403

F = {fixtures!r}
PRODUCTION_PROCESSES = {{
    "web": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{
            "bind": "127.0.0.1:{port}",
            "workers": "1",
            "access-logfile": "/dev/stderr",  # beside its own notes: "Handling signal: term"
            "access-logformat": "%(r)s %(s)s " + "x" * 4096,
        }},
        "GRACE": {grace},
    }},
    "chatty": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, F + "chatty.py", "200"],
        "GRACE": {grace},
    }},
    "dying": {{
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, F + "dies_on_cue.py", {cue!r}],
        "GRACE": {grace},
    }},
}}
"""
LINE = re.compile(r"^\d\d:\d\d:\d\d (\S+)\s+\| (.*)$")


@dataclass
class Stage:
    project: Path
    url: str
    cue: Path  # touch it: "dying" says its last words and exits
    out: Path  # headless output, through a reader the test can pause
    rc: Path  # the headless console's exit status


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    project = tmp_path / "djproject"
    shutil.copytree(DJPROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3*"))
    port, cue = free_port(), tmp_path / "cue"
    settings = PROCESSES.format(fixtures=f"{FIXTURES}/", port=port, grace=GRACE, cue=str(cue))
    (project / f"{SETTINGS}.py").write_text(settings)
    return Stage(project, f"http://127.0.0.1:{port}/", cue, tmp_path / "out", tmp_path / "rc")


@dataclass
class Console:
    terminal: Terminal
    pid: int  # the console's
    reader: int | None  # headless: the process reading its output (fixtures/reader.py)

    def pids(self) -> list[int]:
        return tree(self.pid)


@contextlib.contextmanager
def running(
    stage: Stage, headless: bool, piped: bool = False, backlog: int = 0, shell: bool = False
) -> Iterator[Console]:
    """The console up with every entry running and the web server answering; killed after.

    ``piped``: headless output goes through a reader (the one a test pauses) to ``out``.
    ``shell``: typed into an interactive bash, whose job control stops a stopped console for
    good (tmux itself continues a pane's own process when it stops).
    """
    argv = console_argv(SETTINGS, headless) + (["--ring-lines", str(backlog)] if backlog else [])
    command = shlex.join(argv)
    if piped:
        reader = shlex.join(fixture_argv("reader", str(stage.out)))
        command = f"{{ {command}; echo $? > {stage.rc}; }} | {reader}"
    env = console_env(stage.project.parent / "db.sqlite3")
    bash = ["bash", "--norc", "--noprofile", "-i"]
    terminal = Terminal(bash if shell else ["sh", "-c", command], stage.project, env)
    if shell:
        terminal.tmux("send-keys", "-l", command)
        terminal.tmux("send-keys", "Enter")
    try:
        console = Console(terminal, *started(terminal, piped))
        deadline = time.monotonic() + 30
        while not (answers(stage.url) and len(console.pids()) >= 6):
            assert time.monotonic() < deadline, f"never up:\n{terminal.screen()}"
            time.sleep(0.1)
        yield console
    finally:
        server = server_pid(terminal)
        for pid in [*tree(terminal.pid), *([server] if server else [])]:
            with contextlib.suppress(psutil.Error):  # whatever a failed test left stopped
                psutil.Process(pid).resume()
        left = tree(terminal.pid)
        terminal.close()
        for pid in wait_gone(left, timeout=GRACE + 5):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def started(terminal: Terminal, piped: bool) -> tuple[int, int | None]:
    """The console's pid, and its reader's when piped, among the pane's descendants."""
    deadline = time.monotonic() + 10
    while True:
        found = {"console": None, "reader": None}
        for proc in psutil.Process(terminal.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmdline = proc.cmdline()
                if "tui.cli" in cmdline and found["console"] is None:
                    found["console"] = proc.pid
                elif any(arg.endswith("reader.py") for arg in cmdline):
                    found["reader"] = proc.pid
        console, reader = found["console"], found["reader"]
        if console is not None and (reader is not None or not piped):
            return console, reader
        assert time.monotonic() < deadline, f"no console (or reader) in:\n{terminal.screen()}"
        time.sleep(0.05)


def server_pid(terminal: Terminal) -> int | None:
    with contextlib.suppress(Exception):
        return psutil.Process(terminal.pid).ppid()
    return None


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def serves_throughout(
    url: str, seconds: float, midway: Callable[[], object] = lambda: None
) -> list[str]:
    """Ask every 100 ms for ``seconds``; ``midway`` runs after the first tenth. The failures."""
    failures = []
    start = time.monotonic()
    done_midway = False
    while (elapsed := time.monotonic() - start) < seconds:
        if not done_midway and elapsed > seconds / 10:
            midway()
            done_midway = True
        if not answers(url):
            failures.append(f"no answer at {elapsed:.1f} s")
        time.sleep(0.1)
    return failures


def gone_within(pids: list[int], seconds: float) -> list[str]:
    return described(wait_gone(pids, timeout=seconds))


def lines(out: Path) -> list[tuple[str, str]]:
    """(name, text) of every complete headless line; a torn last line is left out."""
    text = out.read_text(errors="replace")
    found = []
    for line in text.splitlines()[: None if text.endswith("\n") else -1]:
        match = LINE.match(line)
        if match:
            found.append((match[1], match[2]))
    return found


def missing_and_skipped(out: Path) -> tuple[int, int]:
    """Numbered lines of "chatty" and "dying" missing before the newest one seen, and the
    lines the console said it skipped."""
    seen = lines(out)
    skipped = sum(
        int(m[1]) for _name, text in seen if (m := re.match(r"(\d+) lines skipped", text))
    )
    missing = 0
    for name, pattern, step in (
        ("chatty", r"out (\d+)", 1),
        ("chatty", r"err (\d+)", 3),
        ("dying", r"last (\d+)", 1),
    ):
        numbers = {
            int(m[1]) for n, text in seen if n == name and (m := re.fullmatch(pattern, text))
        }
        if numbers:
            missing += len(set(range(step, max(numbers) + 1, step)) - numbers)
    return missing, skipped


# -- headless, piped into a reader that stops reading ------------------------------------------


def test_headless_paused_reader_keeps_production_and_last_words(stage: Stage) -> None:
    """``| less`` paused: the web server answers, and "dying" exits during the pause with 300
    lines and a FATAL line: all of them reach the reader once it reads again."""
    with running(stage, headless=True, piped=True) as console:
        assert console.reader is not None
        psutil.Process(console.reader).suspend()
        failures = serves_throughout(stage.url, PAUSE, stage.cue.touch)
        psutil.Process(console.reader).resume()
        deadline = time.monotonic() + 5
        while ("dying", "FATAL: out of cues") not in lines(stage.out):
            assert time.monotonic() < deadline, "the FATAL line never came"
            time.sleep(0.1)
        last = {text for name, text in lines(stage.out) if name == "dying"}
        assert {f"last {n}" for n in range(1, 301)} <= last
        assert failures == [], failures
        missing, skipped = missing_and_skipped(stage.out)
        assert missing <= skipped, (missing, skipped)


def test_headless_backlog_is_bounded_says_what_it_skipped_and_stops_on_sigterm(
    stage: Stage,
) -> None:
    """A 100-line backlog toward a paused reader: the oldest lines are dropped and counted,
    the web server answers, and SIGTERM during the stall stops everything cleanly (no
    SIGKILL: exit status 0) within the grace period, leaving nothing behind."""
    with running(stage, headless=True, piped=True, backlog=100) as console:
        assert console.reader is not None
        reader = psutil.Process(console.reader)
        reader.suspend()
        failures = serves_throughout(stage.url, PAUSE)
        reader.resume()
        assert failures == [], failures
        deadline = time.monotonic() + 5
        while not missing_and_skipped(stage.out)[1]:
            assert time.monotonic() < deadline, "a 100-line backlog cannot hold a 3 s pause"
            time.sleep(0.1)
        missing, skipped = missing_and_skipped(stage.out)
        assert missing <= skipped, (missing, skipped)

        reader.suspend()
        time.sleep(0.5)  # the reader falls behind again
        pids = console.pids()
        signal_at = time.monotonic()
        psutil.Process(console.pid).terminate()
        left = gone_within(pids, GRACE)
        took = time.monotonic() - signal_at
        reader.resume()
        assert left == [], f"alive {took:.1f} s after SIGTERM: {left}"
        deadline = time.monotonic() + 5
        while not stage.rc.exists() or not stage.rc.read_text().strip():
            assert time.monotonic() < deadline, "no exit status"
            time.sleep(0.05)
        assert stage.rc.read_text().strip() == "0", "something had to be SIGKILLed"


def test_headless_reader_gone_stops_everything_cleanly(stage: Stage) -> None:
    """The reader of a paused pipeline dies (``less`` quit): the console stops everything, as
    on SIGTERM, without SIGKILL and within the grace period."""
    with running(stage, headless=True, piped=True) as console:
        assert console.reader is not None
        reader = psutil.Process(console.reader)
        reader.suspend()
        failures = serves_throughout(stage.url, PAUSE)
        pids = console.pids()
        reader.kill()
        left = gone_within(pids, GRACE)
        assert failures == [], failures
        assert left == [], left
        deadline = time.monotonic() + 5
        while not stage.rc.exists() or not stage.rc.read_text().strip():
            assert time.monotonic() < deadline, "no exit status"
            time.sleep(0.05)
        assert stage.rc.read_text().strip() == "0", "something had to be SIGKILLed"


# -- full screen, on a terminal that stops reading ---------------------------------------------


def test_full_screen_on_a_stopped_tmux_server(stage: Stage) -> None:
    """The tmux server stopped: nobody reads the console's terminal. The web server answers
    throughout; the screen is whole and current once the server runs again; SIGTERM during a
    second stall stops everything cleanly within the grace period."""
    with running(stage, headless=False) as console:
        terminal = console.terminal
        server = server_pid(terminal)
        assert server is not None
        deadline = time.monotonic() + 10
        while "manage.py migrate" not in terminal.screen():  # the layout is final with them
            assert time.monotonic() < deadline, "the setup findings never came"
            time.sleep(0.1)
        before = settled_layout(terminal)
        newest = chatty_on_screen(terminal.screen())
        psutil.Process(server).suspend()
        try:
            failures = serves_throughout(stage.url, PAUSE)
        finally:
            psutil.Process(server).resume()
        assert failures == [], failures
        deadline = time.monotonic() + 5
        while True:
            shot = terminal.screen()
            if borders(shot) == before and chatty_on_screen(shot) > newest + 200 * PAUSE:
                break
            layout = "kept" if borders(shot) == before else "changed"
            assert time.monotonic() < deadline, (
                f"the screen did not come back (chatty {chatty_on_screen(shot)}, "
                f"{newest} before the stall; layout {layout}):\n{shot}"
            )
            time.sleep(0.1)

        pids = console.pids()
        psutil.Process(server).suspend()
        try:
            time.sleep(0.5)  # the screen falls behind again
            psutil.Process(console.pid).terminate()
            left = gone_within(pids, GRACE)
        finally:
            psutil.Process(server).resume()
        assert left == [], left
        deadline = time.monotonic() + 5
        while terminal.tmux("display-message", "-p", "#{pane_dead}") != "1":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = terminal.tmux("display-message", "-p", "#{pane_dead_status}")
        assert status == "0", f"exit status {status}: something had to be SIGKILLed"


def borders(screen: str) -> list[str]:
    """Where the box-drawing characters are: the layout, whatever the logs say."""
    return [re.sub(r"[^─-╿]", " ", row).rstrip() for row in screen.splitlines()]


def settled_layout(terminal: Terminal, timeout: float = 10) -> list[str]:
    """The layout once it holds still for a second: findings that come one after the other
    move the panes, and the stall must be judged against the layout it interrupted."""
    deadline = time.monotonic() + timeout
    layout = borders(terminal.screen())
    while True:
        time.sleep(1)
        now = borders(terminal.screen())
        if now == layout:
            return layout
        assert time.monotonic() < deadline, "the layout never settled"
        layout = now


def chatty_on_screen(screen: str) -> int:
    numbers = [int(n) for n in re.findall(r"\bout (\d+)", screen)]
    return max(numbers, default=0)


# -- Ctrl+Z --------------------------------------------------------------------------------------


@pytest.mark.parametrize("headless", [False, True], ids=["console", "headless"])
def test_ctrl_z_is_refused_and_production_goes_on(stage: Stage, headless: bool) -> None:
    """Ctrl+Z under an interactive shell would stop the console, and with it the reading of
    every pipe, until ``fg``: it is refused with a line saying so, and the web server answers.
    Headless, the key reaches the whole job as SIGTSTP (the reader stops: a paused reader too);
    full screen, the terminal is raw, so the key reaches the app and ``kill -TSTP`` is tried."""
    with running(stage, headless, piped=headless, shell=True) as console:
        if headless:
            suspend = partial(console.terminal.tmux, "send-keys", "C-z")
        else:
            suspend = partial(psutil.Process(console.pid).send_signal, signal.SIGTSTP)
        failures = serves_throughout(stage.url, PAUSE, suspend)
        status = psutil.Process(console.pid).status()
        assert failures == [], failures
        assert status != psutil.STATUS_STOPPED
        if headless:
            assert console.reader is not None
            psutil.Process(console.reader).resume()
            deadline = time.monotonic() + 5
            while not any(text.startswith("Ctrl+Z ignored") for _, text in lines(stage.out)):
                assert time.monotonic() < deadline, "no line says Ctrl+Z was ignored"
                time.sleep(0.1)
            return
        screen = console.terminal.screen()
        assert screen.count("Ctrl+Z is refused") == 1, screen
        console.terminal.tmux("send-keys", "C-z")  # the key: a second notice
        deadline = time.monotonic() + 5
        while console.terminal.screen().count("Ctrl+Z is refused") < 2:
            assert time.monotonic() < deadline, console.terminal.screen()
            time.sleep(0.1)
        assert psutil.Process(console.pid).status() != psutil.STATUS_STOPPED
