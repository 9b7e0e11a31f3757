"""The task worker's master run by hand: signal bursts, and absolute targets over its channel.

The master is started directly (``python -m backends.taskworker``), as a user would, with its
output read by a thread; the console's end of the control channel is ``backends.control``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from backends import control


class Master:
    """A real master process and everything it printed."""

    def __init__(self, djproject: Path, folder: Path, *args: str) -> None:
        self.socket = str(folder / "control")
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "djproject.settings",
            "PYTHONPATH": str(djproject),
            control.ENV: self.socket,
        }
        env.pop("PYTHONUNBUFFERED", None)  # by hand into a pipe: Python buffers its output
        # A one-page pipe: a reader that pauses makes the master's writes block quickly.
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backends.taskworker", "--interval=0.05", *args],
            cwd=djproject,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(write_end)
        self.output = open(read_end, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.lines: list[str] = []
        self.reading = threading.Event()  # cleared: nobody reads, the pipe fills up
        self.reading.set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.output:
            self.lines.append(line.rstrip("\n"))
            self.reading.wait()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def workers(self) -> list[psutil.Process]:
        """Its worker processes, retiring ones included, zombies not."""
        try:
            found = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [p for p in found if _alive(p)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


@pytest.fixture
def master(djproject: Path, tmp_path: Path) -> Iterator[Callable[..., Master]]:
    made: list[Master] = []

    def start(*args: str) -> Master:
        folder = tmp_path / "ctl"
        folder.mkdir(mode=0o700, exist_ok=True)
        made.append(Master(djproject, folder, *args))
        return made[-1]

    yield start
    for m in made:
        m.stop()


def converge(m: Master, client: control.Client, target: dict[str, int]) -> None:
    """Send the absolute target until the master reports it (repeats are harmless)."""

    def reached() -> bool:
        client.send(target)
        time.sleep(0.05)
        return client.read() == target

    wait(reached, what=f"the master to report {target}")


def test_absolute_targets_over_the_channel_repeat_harmlessly(master: Callable[..., Master]) -> None:
    m = master("--processes=1", "--threads=1")
    wait(lambda: m.said("master up"), what="master up")
    client = control.Client(m.socket)
    for _ in range(3):  # the same targets again and again: nothing moves past them
        converge(m, client, {"processes": 3, "threads": 4})
    wait(lambda: len(m.workers()) == 3, what="3 worker processes")
    # each process runs 4 task threads (plus its main and control threads)
    wait(lambda: all(p.num_threads() >= 6 for p in m.workers()), what="4 threads each")
    time.sleep(1.0)
    assert len(m.workers()) == 3
    assert client.read() == {"processes": 3, "threads": 4}
    converge(m, client, {"processes": 1, "threads": 2})
    wait(lambda: len(m.workers()) == 1, what="back to 1 process")
    once_each = (f"scaling to 3 processes x {t}" for t in ("1 thread", "4 threads"))
    assert sum(m.said(line) for line in once_each) == 2


def test_a_signal_burst_never_hits_a_handler_mid_write(master: Callable[..., Master]) -> None:
    """Handlers only record. A burst of scaling signals from another process while the master
    is blocked writing its log (a slow reader: a full pipe) interrupts that write again and
    again; a handler that logged there re-entered the same buffered writer ("reentrant call")."""
    m = master("--processes=3", "--threads=1", "--verbosity=3")
    wait(lambda: len(m.workers()) == 3 and m.said("master up"), what="3 processes")
    m.reading.clear()  # the log fills the pipe: every write blocks from now on
    burst = (
        "import os, signal, sys, time\n"
        "pid = int(sys.argv[1])\n"
        "for i in range(50):\n"
        "    os.kill(pid, signal.SIGUSR1 if i % 2 else signal.SIGUSR2)\n"
        "    os.kill(pid, signal.SIGTTIN if i % 2 else signal.SIGTTOU)\n"
        "    time.sleep(0.005)\n"
    )
    for _ in range(4):
        subprocess.run([sys.executable, "-c", burst, str(m.proc.pid)], check=True)
    m.reading.set()
    time.sleep(1.0)
    assert m.proc.poll() is None, "\n".join(m.lines[-30:])
    assert not m.said("reentrant call"), "\n".join(m.lines[-30:])
    assert not m.said("Traceback"), "\n".join(m.lines[-30:])
    client = control.Client(m.socket)
    converge(m, client, {"processes": 2, "threads": 2})
    wait(lambda: len(m.workers()) == 2, what="2 processes after the burst")
    assert m.proc.poll() is None
