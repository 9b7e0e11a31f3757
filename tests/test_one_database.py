"""One database for everyone: a task worker on another database than the console's statistics
and the web servers is an error naming both, before start (``--check``) and after the worker
says at start which database it uses (its pane); the same database spelled otherwise is none.

The worker gets settings of its own through its ARGS (``djproject.settings_worker``), which
put it on a scratch PostgreSQL database when DJPROJECT_WORKER_PG names one, while the console
reads the project's SQLite file: the shape of the real project where gunicorn loaded ``.env``
and the worker did not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import postgres_missing
from helpers import free_port, run_json
from needs import needs

from backends.dbident import MARK, Database, describe, parse, report_line
from backends.diagnostics.database import FIX

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REALPROJECT = TESTS / "realproject"
OWN_SETTINGS = {"queue": "default", "settings": "djproject.settings_worker"}
PASSWORD = "worker-only-password"  # in settings_worker's DATABASES: never shown


def env(**extra: str) -> dict[str, str]:
    """The test's environment without what the projects' settings and .env files set."""
    dropped = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "PORT")
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**clean, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), **extra}


def check(project: Path, **extra: str) -> tuple[int, list[str]]:
    """``prodserver-tui --check`` in the project; its lines about which database is used (not
    the SQLite locking advice these projects' default settings also get)."""
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--check"],
        cwd=project,
        env=env(
            DJPROJECT_PORT=str(free_port()),
            DJPROJECT_WORKER_ARGS=json.dumps(OWN_SETTINGS),
            **extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    return done.returncode, [x for x in lines if "database" in x and "is SQLite" not in x]


def console(project: Path, **extra: str) -> dict[str, str]:
    argv = [sys.executable, str(TESTS / "console_databases.py"), str(project)]
    extra.setdefault("DJPROJECT_WORKER_ARGS", json.dumps(OWN_SETTINGS))
    seen: dict[str, str] = run_json(argv, project, env(**extra), timeout=90)
    assert PASSWORD not in json.dumps(seen)
    return seen


@needs("PostgreSQL", postgres_missing)
def test_a_worker_on_another_database_is_an_error_naming_both(
    djproject: Path, scratch_pg: str
) -> None:
    sqlite = os.path.realpath(os.environ["DJPROJECT_DB"])
    theirs = f'postgresql "{scratch_pg}" on 127.0.0.1:5432'
    code, lines = check(djproject, DJPROJECT_WORKER_PG=scratch_pg)
    assert (code, lines) == (
        1,
        [
            f"error    worker: worker will use {theirs} (its ARGS give --settings="
            "djproject.settings_worker), but the console's task statistics and the settings it "
            f"loaded (djproject.settings) use sqlite {sqlite}, so tasks are enqueued in one and "
            "looked for in the other — start every process with the same settings "
            "and environment: the same DJANGO_SETTINGS_MODULE and DATABASE_URL (or the .env "
            "file that sets it); an entry's own --settings or environment must point at the "
            "same database"
        ],
    )

    seen = console(djproject, DJPROJECT_WORKER_PG=scratch_pg)
    said = (
        f"worker uses {theirs}, but the web servers and the console's task statistics use "
        f"sqlite {sqlite}, so tasks are enqueued in one and looked for in the other"
    )
    assert [line for line in seen["findings"] if "uses postgresql" in line] == [
        f"error    worker: {said} — start every process with the same settings and environment: "
        "the same DJANGO_SETTINGS_MODULE and DATABASE_URL (or the .env file that sets it); an "
        "entry's own --settings or environment must point at the same database"
    ], seen["findings"]
    assert not [line for line in seen["findings"] if "will use" in line]  # the report won
    assert said in seen["pane"]
    assert seen["banner"] == ""


@needs("PostgreSQL", postgres_missing)
def test_a_worker_whose_env_sets_database_url_is_named_with_no_password(
    tmp_path: Path, scratch_pg: str
) -> None:
    """The issue's project: settings from DATABASE_URL with an SQLite fallback, a .env without
    DATABASE_URL, and the worker entry's own ENV putting it on PostgreSQL, password and all."""
    project = tmp_path / "realproject"
    shutil.copytree(REALPROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    (project / ".env").write_text(f"SECRET_KEY=test-only-key-{os.getpid()}\nPORT={free_port()}\n")
    url = f"postgres://postgres:{PASSWORD}@127.0.0.1:5432/{scratch_pg}"
    with (project / "realsite" / "settings" / "production.py").open("a") as settings:
        settings.write(f'\nPRODUCTION_PROCESSES["worker"]["ENV"] = {{"DATABASE_URL": "{url}"}}\n')
    sqlite = os.path.realpath(project / "db.sqlite3")
    theirs = f'postgresql "{scratch_pg}" on 127.0.0.1:5432'

    code, lines = check(project)
    assert (code, lines[-1:]) == (
        1,
        [
            f"error    worker: worker will use {theirs} (its environment sets DATABASE_URL), "
            "but the console's task statistics and the settings it loaded (realsite.settings."
            f"production) use sqlite {sqlite}, so tasks are enqueued in one and looked for in "
            f"the other — {FIX}"
        ],
    )

    seen = console(project)
    said = (
        f"worker uses {theirs}, but the web servers and the console's task statistics use "
        f"sqlite {sqlite}, so tasks are enqueued in one and looked for in the other"
    )
    assert [f for f in seen["findings"] if "database" in f] == [f"error    worker: {said} — {FIX}"]
    assert said in seen["pane"]


def test_a_worker_on_the_same_database_spelled_otherwise_has_no_finding(djproject: Path) -> None:
    """settings_worker names the console's SQLite file by a relative path: the same file."""
    assert check(djproject) == (0, [])
    seen = console(djproject)
    report = parse(seen["report"], json.loads(seen["report"][len(MARK) :])["pid"])
    assert report == Database(
        "default", "sqlite", "", "", os.path.realpath(os.environ["DJPROJECT_DB"])
    )
    assert seen["findings"] == [] and seen["pane"] == ""


def test_a_report_never_carries_a_password_and_survives_hostile_lines() -> None:
    params = {
        "ENGINE": "django.contrib.gis.db.backends.postgis",
        "NAME": "shop",
        "HOST": "admin:hunter2secret@db.internal",
        "USER": "admin",
        "PASSWORD": "hunter2secret",
        "OPTIONS": {"passfile": "/secret/pgpass"},
    }
    line = report_line(describe(params), pid=4242)
    assert "hunter2secret" not in line and "admin" not in line and "pgpass" not in line
    said = parse(line, 4242)
    assert said == Database("default", "postgresql", "db.internal", "5432", "shop")
    plain = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "db.internal"}
    assert said.same(describe({**plain, "PORT": 5432}))
    assert not said.same(describe({**params, "HOST": "db.internal", "PORT": "5433"}))
    local = describe({"ENGINE": "django.db.backends.postgresql", "NAME": "shop"})
    assert local.same(describe({**params, "HOST": "127.0.0.1"})) and not local.same(said)
    memory = describe({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})
    assert not memory.same(memory)  # each process has its own
    # Another pid (a task printing the line), not JSON, wrong types, a megabyte, NUL, escapes.
    for hostile in (
        report_line(said, pid=4243),
        MARK + "{not json",
        MARK + json.dumps({**json.loads(line[len(MARK) :]), "alias": 1}),
        MARK + json.dumps({"pid": 4242, "name": "x" * 1_000_000}),
        MARK + "\0\x1b[2J" + "\udcff",
    ):
        assert parse(hostile, 4242) is None
