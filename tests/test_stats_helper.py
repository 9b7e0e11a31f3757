"""The console never loads the project's apps: its statistics helper (a child) does.

The test project's apps write the pid of every process that loads them to a file
(DJPROJECT_READY_LOG), so "the console imported the project" is a fact read from outside, not
a mock. Statistics must still appear, update, survive a killed helper, and leave no helper
behind when the console stops or is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import TESTS
from helpers import run_json, wait_gone


def loaded_by(log: Path) -> set[int]:
    return {int(pid) for pid in log.read_text().split()} if log.exists() else set()


def test_statistics_come_from_a_helper_and_the_console_never_loads_the_apps(
    djproject: Path, tmp_path: Path
) -> None:
    log = tmp_path / "ready.log"
    env = {**os.environ, "DJPROJECT_READY_LOG": str(log)}
    seen = run_json(
        [sys.executable, str(TESTS / "console_small.py"), str(djproject)], djproject, env, 120
    )
    loaded = loaded_by(log)
    assert seen["console"] not in loaded, f"the console loaded the project's apps: {seen}"
    assert "failed" not in seen, seen
    assert seen["traceback"] is True
    assert "statistics helper" in seen["error"] and "killed by SIGKILL" in seen["error"], seen
    assert seen["restarted"] is True
    assert seen["helpers_left"] == []
    assert set(seen["helpers"]) <= loaded, (seen, loaded)


def test_no_helper_outlives_a_sigkilled_console(djproject: Path, tmp_path: Path) -> None:
    """The real command, headless: its helper goes with it, and never was it."""
    log = tmp_path / "ready.log"
    env = {**os.environ, "DJPROJECT_READY_LOG": str(log)}
    console = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--headless", "worker"],
        cwd=djproject,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        helper = None
        deadline = time.monotonic() + 30
        while helper is None or helper not in loaded_by(log):
            assert time.monotonic() < deadline, "no statistics helper loaded the apps"
            assert console.poll() is None, "the console exited"
            assert console.pid not in loaded_by(log), "the console loaded the project's apps"
            found = [
                p.pid
                for p in psutil.Process(console.pid).children()
                if "tui.engine.stats_helper" in " ".join(p.cmdline())
            ]
            helper = found[0] if found else None
            time.sleep(0.05)
        console.send_signal(signal.SIGKILL)
        console.wait()
        assert wait_gone([helper], timeout=5) == []
        assert console.pid not in loaded_by(log)
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()
