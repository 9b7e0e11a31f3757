"""Shared test helpers: paths to the fixture programs and a migrated copy of the test project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tui.project import Entry
from tui.supervisor import Supervisor

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
DJPROJECT = TESTS / "djproject"


def fixture_argv(name: str, *args: str) -> list[str]:
    """The argv that runs fixture program ``name`` with this interpreter (no reliance on +x)."""
    return [sys.executable, str(FIXTURES / f"{name}.py"), *args]


@pytest.fixture
def djproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, migrated copy of tests/djproject: tests may write to it and run it freely."""
    project = tmp_path / "djproject"
    shutil.copytree(DJPROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3*"))
    monkeypatch.setenv("DJPROJECT_DB", str(tmp_path / "db.sqlite3"))
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=project,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )
    except subprocess.CalledProcessError as exc:  # show why, not just the exit code
        pytest.fail(f"djproject migrate failed:\n{exc.stdout}{exc.stderr}")
    return project


@pytest.fixture
async def supervise() -> AsyncIterator[Callable[..., Awaitable[Supervisor]]]:
    """Start a supervisor over entries; whatever a test leaves running is killed afterwards."""
    made: list[Supervisor] = []

    async def start(*entries: Entry, **kwargs: Any) -> Supervisor:
        sup = Supervisor(list(entries), watchdog=False, **kwargs)
        made.append(sup)
        await sup.start_all()
        return sup

    yield start
    for sup in made:
        sup.kill_all()
        await sup.stop_all()
