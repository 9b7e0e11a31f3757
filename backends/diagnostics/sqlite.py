"""SQLite written by more than one process or thread, without the settings that make it wait.

Django begins a transaction with a plain ``BEGIN``: it reads first and asks for the write lock
at its first write, and SQLite refuses that at once, busy timeout or not, while another
connection writes (waiting could deadlock). On a real project a web server beside a 2 x 2
worker, even an idle one, had the site's saves and its tasks fail with "database is locked";
``transaction_mode`` IMMEDIATE (the lock taken at ``BEGIN``, where the busy timeout waits),
a busy timeout and WAL (readers and the writer side by side) ended it: bench/sqlite_locking.py
measures both. Read-only: the journal mode comes from the database file's header, so
``--check`` opens no connection and writes nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from backends.base import flat
from backends.diagnostics.finding import EntryLike, Finding

MIN_TIMEOUT = 10.0  # seconds; Python's sqlite3 waits 5 unless OPTIONS["timeout"] says more
RECOMMENDED: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}
WAL_HEADER = b"\x02\x02"  # bytes 18-19 of the file, write and read versions: 2 is WAL
SQLITE_ENGINE = "django.db.backends.sqlite3"
#: Why the task worker, which sets IMMEDIATE and a busy timeout on its own connections, leaves
#: WAL to the settings: the journal mode is written into the database file and holds for
#: every program that opens it, and WAL needs all of them on this machine (its shared memory
#: does not work over a network filesystem), which only the project's owner knows.
WAL_NOT_OURS = (
    "; the task worker does not switch WAL on by itself: it is a mode of the database file, "
    "for every program that opens it, and needs them all on this machine's own disk"
)


def check_sqlite(settings: Any, entries: Sequence[EntryLike]) -> list[Finding]:
    """A warning per SQLite database (the default one, and the one the tasks live in) that
    several processes or threads write without IMMEDIATE, a busy timeout and WAL."""
    writers = [
        (e.name, e.backend.db_connections())
        for e in entries
        if e.backend is not None and e.backend.db_connections()
    ]
    total = sum(count for _, count in writers)
    if total < 2:
        return []
    databases = getattr(settings, "DATABASES", None) or {}
    found = []
    for alias in dict.fromkeys(["default", _tasks_alias()]):
        params = databases.get(alias)
        if not isinstance(params, dict) or params.get("ENGINE") != SQLITE_ENGINE:
            continue
        options = params.get("OPTIONS") or {}
        if not isinstance(options, dict):
            continue  # Django itself refuses it, in the migration check's words
        missing = _missing(options, str(params.get("NAME") or ""))
        if not missing:
            continue
        who = ", ".join(f"{name} {count}" for name, count in writers)
        what = (
            f"DATABASES[{alias!r}] is SQLite and {total} processes and threads write to it at "
            f"once ({who}) without {' or '.join(missing)}, so saves and tasks fail with "
            '"database is locked"'
        )
        fix = f"set DATABASES[{alias!r}]['OPTIONS'] = {_fixed(options)} (Django 5.1 or later)"
        if "WAL" in missing:
            fix += WAL_NOT_OURS
        found.append(Finding("warning", "sqlite-locking", None, what, fix, topic=alias))
    return found


def _missing(options: dict[str, Any], name: str) -> list[str]:
    missing = []
    if str(options.get("transaction_mode") or "").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
        missing.append('transaction_mode "IMMEDIATE"')
    if _timeout(options) < MIN_TIMEOUT:
        missing.append(f"a busy timeout of {MIN_TIMEOUT:.0f} s or more")
    if not (_wal_command(options) or _wal_file(name)):
        missing.append("WAL")
    return missing


def _fixed(options: dict[str, Any]) -> str:
    """The user's OPTIONS with what is missing added: the exact dict to paste."""
    fixed = dict(options)
    if str(options.get("transaction_mode") or "").upper() not in ("IMMEDIATE", "EXCLUSIVE"):
        fixed["transaction_mode"] = RECOMMENDED["transaction_mode"]
    if _timeout(options) < MIN_TIMEOUT:
        fixed["timeout"] = RECOMMENDED["timeout"]
    if not _wal_command(options):
        command = str(options.get("init_command") or "").strip()
        if command and not command.endswith(";"):
            command += ";"
        fixed["init_command"] = f"{command} {RECOMMENDED['init_command']}".strip()
    return flat(repr(fixed), 400)


def _timeout(options: dict[str, Any]) -> float:
    value = options.get("timeout", 5.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _wal_command(options: dict[str, Any]) -> bool:
    command = "".join(str(options.get("init_command") or "").lower().split())
    return "journal_mode=wal" in command


def _wal_file(name: str) -> bool:
    """Whether the file is in WAL mode, from its header: WAL is the one journal mode that
    persists in the file. A missing file (not migrated yet) or an in-memory one is not."""
    if not name or name == ":memory:" or name.startswith("file:"):
        return False
    with contextlib.suppress(OSError), open(os.fsencode(name), "rb") as f:
        header = f.read(20)
        return header.startswith(b"SQLite format 3\x00") and header[18:20] == WAL_HEADER
    return False


def _tasks_alias() -> str:
    """The database django-tasks-db writes its results to, where the router says."""
    from backends.django_setup import SetupFailed, setup_once

    try:
        setup_once()
        from django.db import router
        from django_tasks_db.models import DBTaskResult

        return str(router.db_for_write(DBTaskResult))
    except (SetupFailed, ImportError, LookupError):
        return "default"
