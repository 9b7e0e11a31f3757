"""The parent-death signal: SIGKILL for a tree that stops by itself when its main process goes,
the stop signal for one that stops gracefully only through its main process (Celery's warm
shutdown), so a console SIGKILLed with its watchdog alive does not cost that warm shutdown."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import is_alive, wait_gone

from tui.engine.deathsig import guarded

# Says which signal ended it: a handler for SIGTERM writes "term" and exits 0.
CHILD = """
import signal, sys, time
def term(*_):
    open(sys.argv[1], "w").write("term"); sys.exit(0)
signal.signal(signal.SIGTERM, term)
open(sys.argv[1] + ".up", "w").write("up")
time.sleep(600)
"""

# A stand-in for the console: starts the child under the shim, prints its pid, then sleeps
# until it is SIGKILLed.
PARENT = """
import subprocess, sys, time
from tui.engine.deathsig import guarded
argv = guarded([sys.executable, "-c", sys.argv[1], sys.argv[2]], sys.argv[3] == "1", 15)
print(subprocess.Popen(argv).pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(("stop_group", "said"), [(True, None), (False, "term")])
def test_the_parent_death_signal_follows_how_the_tree_stops(
    tmp_path: Path, stop_group: bool, said: str | None
) -> None:
    out = tmp_path / "said"
    repo = str(Path(__file__).resolve().parent.parent)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(out), "1" if stop_group else "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=repo,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while not Path(f"{out}.up").exists():  # its handler is installed
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_gone([child]) == [], "the child outlived its parent"
    assert not is_alive(child)
    assert (out.read_text() if out.exists() else None) == said


def test_guarded_keeps_the_program_and_its_arguments() -> None:
    argv = guarded(["prog", "a b", "--x=1"], True, signal.SIGTERM)
    assert argv[-3:] == ["prog", "a b", "--x=1"]
    assert argv[argv.index("prog") - 1] == str(int(signal.SIGKILL))
