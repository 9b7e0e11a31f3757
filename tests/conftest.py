"""Shared test helpers: paths to the fixture programs and a migrated copy of the test project."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import migrated_copy
from needs import needs, pytest_configure, pytest_runtest_setup  # noqa: F401  (the plugin's hooks)

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.supervisor import Supervisor
from tui.project import Entry

TESTS = Path(__file__).resolve().parent

# pytest-xdist's workers export COLUMNS=80 and LINES=24, and shutil.get_terminal_size (so
# Textual) believes them over the terminal itself: a console the tests start in a 160x48 tmux
# pane would draw 80x24 and never follow a resize.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

# Every engine a test starts (the console's, headless, `up`) takes a place: a control socket
# and a state folder with its log files. Each test process gets its own, short enough for a
# socket path (107 bytes), and never the user's own.
_PLACES = tempfile.mkdtemp(prefix="pt-")
os.environ["XDG_RUNTIME_DIR"] = os.path.join(_PLACES, "run")
os.environ["XDG_STATE_HOME"] = os.path.join(_PLACES, "state")
os.environ.pop("PRODSERVER_TUI_SOCKET", None)
atexit.register(shutil.rmtree, _PLACES, True)
FIXTURES = TESTS / "fixtures"


def fixture_argv(name: str, *args: str) -> list[str]:
    """The argv that runs fixture program ``name`` with this interpreter (no reliance on +x)."""
    return [sys.executable, str(FIXTURES / f"{name}.py"), *args]


@pytest.fixture(params=["sqlite"])
def djproject(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A private, migrated copy of tests/djproject: tests may write to it and run it freely."""
    monkeypatch.setenv("DJPROJECT_DB", str(tmp_path / "db.sqlite3"))
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            monkeypatch.setenv("DJPROJECT_PG", stack.enter_context(scratch_database()))
        yield migrated_copy(tmp_path)


_scratch_numbers = itertools.count()


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """An empty database of its own on the shared PostgreSQL server, dropped afterwards."""
    name = f"prodserver_test_{os.getpid()}_{next(_scratch_numbers)}"
    _postgres(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_pg() -> Iterator[str]:
    """The name of an empty scratch PostgreSQL database (a test that needs PostgreSQL)."""
    with scratch_database() as name:
        yield name


def postgres_missing() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when a server answers on loopback."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]' in the checkout)"
    try:
        psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=2
        ).close()
    except psycopg.Error as e:
        return f"no PostgreSQL server answers on 127.0.0.1:5432 ({str(e).strip()[:80]})"
    return None


def _postgres(sql: str) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(sql)  # type: ignore[arg-type]


POSTGRES = pytest.param(
    "postgresql",
    marks=needs("PostgreSQL", postgres_missing),
)


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


Console = Callable[..., ConsoleApp]


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    """A console over real entries (Supervisor options as keywords; statistics every 0.5 s
    unless told); whatever a test leaves running is killed afterwards."""
    made: list[Supervisor] = []

    def make(*entries: Entry, **options: Any) -> ConsoleApp:
        sup = Supervisor(list(entries), watchdog=False, **{"stats_every": 0.5, **options})
        made.append(sup)
        return ConsoleApp(LocalEngine(sup, "test.settings"), host="testhost")

    yield make
    for sup in made:
        sup.kill_all()
        await sup.stop_all()
