"""The command as a user runs it: headless output and exit codes (its death: test_own_death)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import FIXTURES
from helpers import Drained, tree, wait_gone

REPO = Path(__file__).resolve().parent.parent


def headless(cwd: Path, *args: str) -> Drained:
    """``prodserver-tui --headless`` on the settings ``s`` in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    return Drained(
        [sys.executable, "-m", "tui.cli", "--headless", "--settings", "s", *args], cwd, env
    )


def settings(folder: Path, entries: dict[str, str]) -> None:
    body = ",\n".join(
        f'    "{name}": {{"BACKEND": "backends.command.Command", "ARGS": {args}}}'
        for name, args in entries.items()
    )
    (folder / "s.py").write_text(
        textwrap.dedent(f"""
        import sys
        F = {str(FIXTURES) + "/"!r}
        SECRET_KEY = "test"
        PRODUCTION_PROCESSES = {{
        """)
        + body
        + "\n}\n"
    )


def py(script: str, *args: str) -> str:
    return (
        repr(["__PY__", "__F__" + script + ".py", *args])
        .replace("'__PY__'", "sys.executable")
        .replace("'__F__", "F + '")
    )


def test_headless_prefixes_lines_and_exits_0_when_all_stop_cleanly(tmp_path: Path) -> None:
    settings(tmp_path, {"chatty": py("chatty"), "grouped": py("spawns_grandchild")})
    run = headless(tmp_path)
    run.wait_for("-- running", count=2)
    run.wait_for("| out 2")
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=15) == 0
    line = next(line for line in run.lines if "| out 2" in line)
    assert line.split(" ", 1)[1] == "chatty  | out 2"
    assert time.strptime(line.split(" ", 1)[0], "%H:%M:%S")
    assert not any("\x1b" in line for line in run.lines)  # no colour when not a terminal


def test_headless_says_how_many_lines_a_flood_skipped(tmp_path: Path) -> None:
    """One read of a flood holds thousands of lines, more than a 100-line ring keeps: what
    the ring dropped before headless saw it is counted, not silently missing."""
    settings(tmp_path, {"flood": py("flood", "100000")})
    run = headless(tmp_path, "--ring-lines", "100")
    run.wait_for("exited with code 0")
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=15) == 0
    seen = {int(m[1]) for line in run.lines if (m := re.search(r"flood \| (\d{10}) x+$", line))}
    skipped = sum(
        int(m[1]) for line in run.lines if (m := re.search(r"\| (\d+) lines skipped", line))
    )
    missing = 100_000 - len(seen)
    assert 0 < missing <= skipped, (missing, skipped)


def test_exit_is_non_zero_when_something_had_to_be_killed(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text(
        f"import sys\nSECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'stubborn': {{"
        f"'BACKEND': 'backends.command.Command', 'GRACE': 1, "
        f"'ARGS': [sys.executable, {str(FIXTURES / 'ignores_sigterm.py')!r}]}}}}\n"
    )
    run = headless(tmp_path)
    run.wait_for("ignoring SIGTERM")
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=15) == 1
    assert any("killed by SIGKILL after its grace period" in line for line in run.lines)


def test_sigterm_works_while_nobody_reads_the_output(tmp_path: Path) -> None:
    """``prodserver-tui --headless | less``, paused: the console must still answer signals."""
    settings(tmp_path, {"flood": py("flood", "5000000")})
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--headless", "--settings", "s"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,  # never read
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(3)  # long enough to fill every pipe between the flood and us
        pids = tree(proc.pid)[1:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert wait_gone(pids, timeout=5) == []
    finally:
        proc.kill()
