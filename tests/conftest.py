"""Shared test helpers: paths to the fixture programs and a migrated copy of the test project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
