"""Environment files (issue 14): the project's .env reaches the console and every child.

The fixture is tests/realproject, shaped like the project of the issue: its settings read
DATABASE_URL and PORT from the environment, and only manage.py and wsgi.py load .env. Each
test copies it and writes its own .env. Every run is a fresh process (Django settings load
once per process, and .env lands in the console's environment).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import TESTS, postgres_missing
from helpers import free_port, run_json
from hypothesis import given, settings
from hypothesis import strategies as st
from needs import needs

from tui import envfile

REPO = TESTS.parent
REALPROJECT = TESTS / "realproject"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without what the .env files set (the environment would win)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), **extra}
    for key in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "PORT", "GREETING"):
        if key not in extra:
            env.pop(key, None)
    return env


def copy(tmp_path: Path, dotenv: str | bytes | None) -> Path:
    project = tmp_path / "realproject"
    shutil.copytree(REALPROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    if dotenv is not None:
        data = dotenv.encode() if isinstance(dotenv, str) else dotenv
        (project / ".env").write_bytes(data)
    return project


def console(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=project,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs("PostgreSQL", postgres_missing)
def test_env_file_reaches_the_worker_the_web_and_the_statistics(
    tmp_path: Path, scratch_pg: str
) -> None:
    """The issue's "tasks silently never ran": the web server loads .env itself (wsgi.py) and
    writes to PostgreSQL; the worker and the statistics must use that database too."""
    url = f"postgres://postgres@127.0.0.1:5432/{scratch_pg}"
    project = copy(tmp_path, f"SECRET_KEY=not-secret-{scratch_pg}\nDATABASE_URL={url}\n")
    (project / ".env").write_text(
        (project / ".env").read_text() + f"PORT={free_port()}\n", encoding="utf-8"
    )
    env = clean_env()
    enqueue = "from shop.tasks import send_receipt\nfor t in 'abc': send_receipt.enqueue(t)"
    for argv in (["migrate", "--noinput"], ["shell", "-c", enqueue]):  # manage.py loads .env
        done = subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=project, env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()
    seen = run_json(
        [sys.executable, str(TESTS / "realproject_console.py"), str(project)], project, env
    )
    assert seen["web"] == f"postgresql {scratch_pg}"
    assert seen["orders"] == "first", seen  # the worker ran the web's task, in PostgreSQL
    assert seen["later_ready"] == 3, seen  # the statistics read the same database
    assert not (project / "db.sqlite3").exists()  # nobody fell back to SQLite


def test_check_lists_the_env_file_and_masks_its_secrets(tmp_path: Path) -> None:
    port = free_port()
    project = copy(
        tmp_path,
        "# a comment\n"
        "SECRET_KEY=s3cr3t-value-of-the-site\n"
        "DATABASE_URL=postgres://shop:hunter2hunter2@127.0.0.1:1/shop\n"
        f"PORT={port}\n",
    )
    done = console(project, "--check")
    assert f"bind=127.0.0.1:{port}" in done.stdout, done.stdout + done.stderr  # settings saw it
    line = next(x for x in done.stdout.splitlines() if x.startswith("env file "))
    assert str(project / ".env") in line and f"PORT={port}" in line
    assert "SECRET_KEY=****" in line and "DATABASE_URL=" in line
    assert "s3cr3t-value" not in done.stdout and "hunter2" not in done.stdout


def test_env_file_flags_order_and_the_environment_wins(tmp_path: Path) -> None:
    """--env-file replaces .env, a later file wins over an earlier one, the real environment
    over both; --no-env-file loads none; a missing --env-file is one line and exit 2."""
    ports = [free_port() for _ in range(4)]
    project = copy(tmp_path, f"PORT={ports[0]}\n")
    (project / "a.env").write_text(f"PORT={ports[1]}\nSECRET_KEY=from-a-file\n")
    (project / "b.env").write_text(f"PORT={ports[2]}\n")

    def bind(*args: str, **env: str) -> str:
        done = console(project, "--check", *args, **env)
        web = next(x for x in done.stdout.splitlines() if x.startswith("web "))
        return web.split("bind=")[1].split()[0]

    assert bind() == f"127.0.0.1:{ports[0]}"
    assert bind("--env-file", "a.env", "--env-file", "b.env") == f"127.0.0.1:{ports[2]}"
    assert bind("--env-file", "b.env", "--env-file", "a.env") == f"127.0.0.1:{ports[1]}"
    assert bind("--env-file", "a.env", PORT=str(ports[3])) == f"127.0.0.1:{ports[3]}"
    assert bind("--no-env-file") == "127.0.0.1:8000"  # production.py's fallback
    missing = console(project, "--check", "--env-file", "nowhere.env")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "--env-file nowhere.env: cannot read it" in (
        missing.stderr
    )


PROBE_SETTINGS = """\
import sys
from .production import *  # noqa: F403

SHOW = "import os, sys; print(*(os.environ.get(k, '-') for k in sys.argv[1:]), flush=True)"
PRODUCTION_PROCESSES = {
    "show": {
        "BACKEND": "backends.command.Command",
        "ARGS": [sys.executable, "-c", SHOW + "; import time; time.sleep(60)",
                 "GREETING", "FROM_FILE", "SHELLISH", "MULTI", "ONLY_ENV"],
        "ENV": {"GREETING": "from-entry", "ONLY_ENV": "entry"},
    },
    "bad": {"BACKEND": "backends.command.Command", "ARGS": ["true"], "ENV": {"N": 1}},
}
"""


def test_every_child_gets_the_env_file_and_its_entry_env_wins(tmp_path: Path) -> None:
    """A child sees the file's values literally ($(...) is never run, newlines kept), the
    entry's ENV over the environment and the file; a bad ENV stops that entry alone."""
    marker = tmp_path / "executed"
    project = copy(
        tmp_path,
        "GREETING=from-file\nFROM_FILE=yes\n"
        f"SHELLISH=$(touch {marker})`touch {marker}`\n"
        'MULTI="one\ntwo"\n',
    )
    (project / "realsite" / "settings" / "probe.py").write_text(PROBE_SETTINGS)
    check = console(project, "--check", "--settings", "realsite.settings.probe", GREETING="env")
    assert "entry-key-unknown" not in check.stdout  # ENV is a key the backends read
    assert "  env       GREETING=from-entry ONLY_ENV=entry" in check.stdout
    bad = next(x for x in check.stdout.splitlines() if x.startswith("bad "))
    assert "ENV N must be a string" in bad, check.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--headless", "--settings", "realsite.settings.probe"],
        cwd=project,
        env=clean_env(GREETING="env"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        said = ""
        while "two entry" not in said and time.monotonic() < deadline:
            said += proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[0]
    shown = next((x for x in said.splitlines() if "from-entry" in x), said + rest)
    assert shown.endswith(f"| from-entry yes $(touch {marker})`touch {marker}` one"), shown
    assert "show | two entry" in said  # the value's second line, then ONLY_ENV
    assert not marker.exists()


def test_bad_env_file_lines_are_named_and_the_rest_loads(tmp_path: Path) -> None:
    port = free_port()
    project = copy(
        tmp_path,
        b"GOOD=1\nthis is not an assignment\n"
        b"LATIN=caf\xe9\n"
        b"NUL=a\x00b\n" + f"PORT={port}\n".encode(),
    )
    done = console(project, "--check")
    assert f"bind=127.0.0.1:{port}" in done.stdout, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    path = project / ".env"
    syntax = [x for x in lines if f"{path}:2 is not a NAME=value line" in x]
    encoding = [x for x in lines if f"{path}:3 is not UTF-8" in x]
    unusable = [x for x in lines if "'NUL'" in x and "cannot be environment variables" in x]
    assert len(syntax) == len(encoding) == len(unusable) == 1, done.stdout
    assert all(x.startswith("warning") for x in syntax + encoding + unusable)
    assert "GOOD=1" in next(x for x in lines if x.startswith("env file "))


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.lists(
        st.sampled_from(["A=1", "B='x", 'C="y\nz"', "export D=${A}", "=e", "F", "#", "\x00", "é"]),
        max_size=8,
    ).map(lambda lines: "\n".join(lines).encode())
)
def test_any_bytes_load_or_are_named_on_one_line(data: bytes) -> None:
    """Whatever a .env holds, loading it never raises, sets only what python-dotenv parsed,
    and says each problem on one line."""
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, ".env").write_bytes(data)
        try:
            (loaded,) = envfile.load([], Path(folder))
            applied = {k: os.environ[k] for k in loaded.applied}
        finally:
            os.environ.clear()
            os.environ.update(saved)
    assert applied == {k: loaded.values[k] for k in loaded.applied}
    for finding in loaded.findings:
        assert "\n" not in finding.what
