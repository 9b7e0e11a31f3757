"""Secrets never reach the screen through the console's own lines: --check, panes, headless."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tui.redact import MASK, Redactor, looks_secret

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-db-pass"
TOKEN = "tok_3f9a8b7c6d"
SECRET_KEY = "django-insecure-0123456789abcdef"
ENV_SECRET = "sk_live_from_the_environment"
BROKER = "redis://worker:brokerpass@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "key",
    ["password", "DB_PASSWORD", "--db-password", "SECRET_KEY", "api-key", "apiKey", "token",
     "GITHUB_TOKEN", "accessToken", "SENTRY_DSN", "--auth", "basic_auth", "pwd", "credentials"],
)  # fmt: skip
def test_secret_keys(key: str) -> None:
    assert looks_secret(key)


@pytest.mark.parametrize(
    "key", ["bind", "workers", "keyfile", "--ssl-keyfile", "author", "keepalive", "access-logfile"]
)
def test_ordinary_keys(key: str) -> None:
    assert not looks_secret(key)


def test_argv_masks_flagged_values_in_both_spellings() -> None:
    argv = ["serve", "--password=abc", "--token", "xyz", "--bind", "0.0.0.0:80", "--auth", "-v"]
    assert Redactor().argv(argv) == [
        "serve", f"--password={MASK}", "--token", MASK, "--bind", "0.0.0.0:80", "--auth", "-v"
    ]  # fmt: skip


def test_url_credentials_are_masked_whatever_the_key() -> None:
    redact = Redactor()
    assert redact(f"--broker={BROKER}") == f"--broker=redis://worker:{MASK}@127.0.0.1:6379/0"
    assert redact("redis://:onlypass@host/1") == f"redis://:{MASK}@host/1"
    assert redact("see http://example.com/a:b@c") == "see http://example.com/a:b@c"


def test_known_values_are_masked_anywhere_short_ones_only_by_key() -> None:
    settings = SimpleNamespace(
        SECRET_KEY=SECRET_KEY,
        DATABASES={"default": {"PASSWORD": PASSWORD}},
        PRODUCTION_PROCESSES={
            "w": {"BACKEND": "x", "ARGS": {"api-key": TOKEN, "pin": "1234"}},
            "raw": {"BACKEND": "x", "ARGS": ["--secret", "s3cr3t-value", "--password=abc"]},
            "broken": "not a dict",
        },
    )
    redact = Redactor.for_project(settings, environ={"STRIPE_SECRET": ENV_SECRET, "HOME": "/root"})
    text = f"{SECRET_KEY} {PASSWORD} {TOKEN} s3cr3t-value {ENV_SECRET} /root abc"
    assert redact(text) == f"{MASK} {MASK} {MASK} {MASK} {MASK} /root abc"


def _project(folder: Path) -> Path:
    """A settings module whose entries carry secrets in every shape a user might write."""
    (folder / "s.py").write_text(
        textwrap.dedent(f"""
        import sys
        SECRET_KEY = {SECRET_KEY!r}
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": "x",
                                   "PASSWORD": {PASSWORD!r}}}}}
        PRODUCTION_PROCESSES = {{
            "api": {{
                "BACKEND": "backends.command.Command",
                "ARGS": [sys.executable, "-c", "import time; print('up'); time.sleep(60)",
                         "--token", {TOKEN!r}, "--broker={BROKER}",
                         "--db-password={PASSWORD}", "--env={ENV_SECRET}", "two\\nlines\\x1b[2J"],
            }},
            "bad": {{"BACKEND": "backends.command.Command", "ARGS": ["true"],
                     "GRACE": {PASSWORD!r}}},
        }}
        """)
    )
    return folder


def _console(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STRIPE_SECRET_KEY": ENV_SECRET}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--settings", "s", *args],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


SECRETS = (PASSWORD, TOKEN, SECRET_KEY, ENV_SECRET, "brokerpass")


def test_check_shows_commands_and_errors_without_secrets(tmp_path: Path) -> None:
    console = _console(_project(tmp_path), "--check")
    out, _ = console.communicate(timeout=60)
    assert console.returncode == 1, out  # "bad" has a GRACE error
    assert "--token '****'" in out and "--broker=redis://worker:****@127.0.0.1" in out, out
    assert "--db-password=****" in out and "--env=****" in out, out
    assert "bad: GRACE must be a number of seconds" in out and "got '****'" in out, out
    assert not [s for s in SECRETS if s in out], out
    api = [line for line in out.splitlines() if line.startswith("api ")]
    assert len(api) == 1 and api[0].endswith(r"'two\nlines\x1b[2J'"), out  # one inert line
    assert "\x1b" not in out


def test_headless_command_line_is_masked_but_the_childs_output_is_its_own(tmp_path: Path) -> None:
    """The console's own line about what it ran is masked; what the child prints is shown as
    printed (here only ``up``), since the console cannot know what is secret in it."""
    console = _console(_project(tmp_path), "--headless", "api")
    assert console.stdout is not None
    seen = []
    for line in console.stdout:
        seen.append(line)
        if line.rstrip().endswith("| up"):
            console.send_signal(signal.SIGINT)
    assert console.wait(timeout=30) == 0
    out = "".join(seen)
    assert "-- command: " in out and "--token '****'" in out, out
    assert "up" in out
    assert not [s for s in SECRETS if s in out], out


def test_findings_are_masked_before_anyone_shows_them() -> None:
    from backends.diagnostics import Finding
    from tui.supervisor import Supervisor

    sup = Supervisor([], watchdog=False, redact=Redactor([PASSWORD]))
    found = Finding("error", "database-error", None, f"cannot connect as u:{PASSWORD}", "check it")
    assert sup.masked([found])[0].what == f"cannot connect as u:{MASK}"
