"""Everything the product writes is private, and nothing is read from a folder another user
can change: the Celery beat schedule (a pickle beat loads), the demo's folder and database, the
control channel's folder. Real folders and files; "another user" is ``nobody`` when the tests
run as root (as in CI), else a folder open to everyone (0777) stands for one.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pwd
import shelve
import stat
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import fixture_argv
from helpers import until

from backends import control
from backends.base import Project
from tui.engine.child import State
from tui.engine.supervisor import Supervisor
from tui.project import build_entry

Supervise = Callable[..., Awaitable[Supervisor]]
REPO = Path(__file__).resolve().parent.parent
BEAT = {"BACKEND": "django_prodserver.backends.celery.CeleryBeat", "APP": "djproject.celery:app"}


def shared(top: Path, leaf: Path | None = None) -> Path:
    """Folders as another local user leaves them, from ``top`` down to ``leaf``: theirs (when
    we can chown), open to all."""
    leaf = leaf or top
    leaf.mkdir(parents=True)
    for part in (leaf, *leaf.parents):
        part.chmod(0o777)
        if os.geteuid() == 0:
            os.chown(part, pwd.getpwnam("nobody").pw_uid, -1)
        if part == top:
            return leaf
    raise AssertionError(f"{top} is not above {leaf}")


class Planted:
    """What a crafted schedule holds: unpickling it creates ``marker`` (it could run anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_mode, p.lstat().st_mtime_ns)
        for p in folder.rglob("*")
    }


async def test_beat_never_keeps_its_schedule_in_a_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, supervise: Supervise
) -> None:
    """The reproduction: the state folder cannot be made, and another user made the temp
    folder's schedule folder 0777 with a crafted shelve. Beat fails in its own pane with one
    line, the other entry runs, and nothing is read from the shared folder. Then the state
    folder itself pre-made by another user: the same."""
    project = Project("djproject.settings", str(tmp_path))
    name = f"beat-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}"
    marker = tmp_path / "pickle-ran"
    temp = tmp_path / "tmp"
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    (tmp_path / "not-a-folder").write_text("")
    theirs = tmp_path / "their-state"
    cases = [  # (XDG_STATE_HOME, what another user made, where the schedule would be)
        (tmp_path / "not-a-folder", temp / "prodserver-tui", temp / "prodserver-tui/celerybeat"),
        (theirs, theirs, theirs / "prodserver-tui" / "celerybeat"),
    ]
    other = {"BACKEND": "backends.command.Command", "ARGS": fixture_argv("chatty", "0.05")}

    async def refused(state: Path) -> None:
        monkeypatch.setenv("XDG_STATE_HOME", str(state))
        beat, rest = build_entry("beat", BEAT, project), build_entry("other", other, project)
        sup = await supervise(beat, rest)
        await until(lambda: sup["other"].state is State.RUNNING, what="the other entry running")
        child = sup["beat"]
        assert child.state is State.CONFIG_ERROR and child.pid is None
        assert child.error is not None and "\n" not in child.error, child.error
        assert child.error.startswith("beat: the beat schedule is not private: "), child.error
        assert child.error.endswith('(or set XDG_STATE_HOME, or ARGS "schedule")'), child.error
        await sup.stop_all()

    for state, top, planted in cases:
        with shelve.open(str(shared(top, planted) / name), protocol=pickle.HIGHEST_PROTOCOL) as db:
            db["entries"] = Planted(marker)
        before = listing(planted)
        await refused(state)
        assert not marker.exists()
        assert listing(planted) == before


def test_the_demo_folder_and_database_are_private(tmp_path: Path) -> None:
    """A fresh demo: folder 0700, database 0600 (0755 / 0644 before). A demo folder another
    user made: one line, exit non-zero, nothing written into it or migrated."""

    def prepare(folder: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PRODSERVER_TUI_DEMO_DIR": str(folder), "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, "-c", "from tui import demo; demo.prepare()"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    fresh = tmp_path / "data" / "demo"
    done = prepare(fresh)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "db.sqlite3").stat().st_mode) == 0o600
    assert (fresh / "db.sqlite3").stat().st_size > 0  # migrated

    theirs = shared(tmp_path / "theirs" / "demo")
    done = prepare(theirs)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert f"demo: folder {theirs} " in last and "(or set PRODSERVER_TUI_DEMO_DIR)" in last, last
    assert list(theirs.iterdir()) == []


def test_the_control_listener_refuses_a_shared_folder(tmp_path: Path) -> None:
    """A task worker told (by hand) to listen in a folder others can write: no socket there."""
    folder = shared(tmp_path / "shared")
    with pytest.raises(OSError, match=f"folder {folder} ") as raised:
        control.Listener(str(folder / "control"))
    assert "\n" not in str(raised.value)
    assert list(folder.iterdir()) == []


def test_the_control_folder_is_made_at_start_private_not_at_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    worker = {"BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker"}
    entry = build_entry("worker", worker, Project("djproject.settings", str(tmp_path)))
    assert entry.error is None, entry.error
    entry.launch()
    assert list(temp.iterdir()) == []  # validating and --check make nothing
    entry.prepare()
    path = entry.launch().env[control.ENV]
    assert Path(path).parent.parent == temp
    assert stat.S_IMODE(Path(path).parent.stat().st_mode) == 0o700
