"""Secrets never reach the screen through the console's own lines: --check, panes, headless."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import free_port
from needs import needs

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


# A secret in every common shape, as an argv (shown as --check and the "-- command:" note show
# it) or as text (notes, errors, findings): (shape, given, the secrets, what must stay).
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQ\nZx8Q==\n-----END RSA PRIVATE KEY-----"
GHP = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
XOXB = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
Shape = tuple[str, list[str] | str, tuple[str, ...], tuple[str, ...]]
# fmt: off
SHAPES: list[Shape] = [
    ("gunicorn env", ["gunicorn", "--env=STRIPE_API_KEY=sk_live_51Habc123XYZ", "app:wsgi"],
     ("sk_live_51Habc123XYZ",), ("--env=STRIPE_API_KEY=", "app:wsgi")),
    ("env as next word", ["gunicorn", "--env", "DJANGO_SECRET_KEY=dj-s3cret-val"],
     ("dj-s3cret-val",), ("--env", "DJANGO_SECRET_KEY=")),
    ("bearer header", ["curl", "--header", "Authorization: Bearer abc.def-ghi123", "https://x.io/"],
     ("abc.def-ghi123",), ("Authorization: Bearer", "https://x.io/")),
    ("basic header", ["curl", "-H", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "https://x.io"],
     ("dXNlcjpwYXNzd29yZA==",), ("Authorization: Basic",)),
    ("api key header", ["curl", "-H", "X-Api-Key: k3y-v4lue-99", "https://x.io"],
     ("k3y-v4lue-99",), ("X-Api-Key:",)),
    ("token as URL user", ["git", "clone", f"https://{GHP}@github.com/o/r"],
     (GHP,), ("@github.com/o/r",)),
    ("long URL user", "fetching https://0123456789abcdef0123@example.com/feed",
     ("0123456789abcdef0123",), ("@example.com/feed",)),
    ("@ in URL password", ["--broker=redis://default:p@ss@w0rd@redis.example.com:6379/0"],
     ("p@ss", "ss@w0rd"), ("redis://default:", "@redis.example.com:6379/0")),
    ("query token", "posting to https://hooks.example.com/x?token=abcdef123456&page=1",
     ("abcdef123456",), ("https://hooks.example.com/x?token=", "&page=1")),
    ("query access_token", ["--webhook", "https://x.io/cb?access_token=acc3ss-t0k&a=1"],
     ("acc3ss-t0k",), ("a=1",)),
    ("query api_key", "GET https://maps.example.com/api?api_key=m4ps-k3y-77",
     ("m4ps-k3y-77",), ("api_key=",)),
    ("query sig", "https://acct.blob.core.windows.net/c?sv=2020-08-04&sig=AbCdEf%2Bgh12&se=2026",
     ("AbCdEf%2Bgh12",), ("sv=2020-08-04", "se=2026")),
    ("query X-Amz-Signature", "https://s3.io/k?X-Amz-Signature=5a4f3e2d1c&X-Amz-Expires=60",
     ("5a4f3e2d1c",), ("X-Amz-Expires=60",)),
    ("redis-cli -a", ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-a", "r3dis-pw", "ping"],
     ("r3dis-pw",), ("-p 6379", "-a", "ping")),
    ("mysql -pSECRET", ["mysql", "-u", "root", "-pMyS3cret", "shop"],
     ("MyS3cret",), ("-u root", "-p", "shop")),
    ("mysqldump in sh -c", ["sh", "-c", "mysqldump -uroot -pDump3r shop > /tmp/x.sql"],
     ("Dump3r",), ("mysqldump -uroot -p", "shop > /tmp/x.sql")),
    ("sshpass -p", ["sshpass", "-p", "sshp4ss", "ssh", "host"], ("sshp4ss",), ("ssh host",)),
    ("conninfo password", ["pg_dump", "-d", "host=db user=app password=pg-s3cret dbname=shop"],
     ("pg-s3cret",), ("host=db user=app password=", "dbname=shop")),
    ("conninfo quoted password", ["psql", "host=db password='pg s3cret' dbname=shop"],
     ("pg s3cret", "s3cret"), ("host=db", "dbname=shop")),
    ("env PGPASSWORD", ["env", "PGPASSWORD=pgpw-1234", "psql", "-h", "db"],
     ("pgpw-1234",), ("PGPASSWORD=", "psql -h db")),
    ("env var with spaces", ["env", "DB_PASSWORD=two words", "run"],
     ("two words", "words"), ("run",)),
    ("--user=admin:pw", ["curl", "--user=admin:adm1n-pw", "https://x.io"],
     ("adm1n-pw",), ("--user=admin:",)),
    ("curl -u admin:pw", ["curl", "-u", "admin:curl-pw", "https://x.io"],
     ("curl-pw",), ("admin:",)),
    ("JSON in ARGS",
     ["worker", "--config", '{"db": {"password": "js0n-pw", "host": "db"}, "token": "js0n-tok"}'],
     ("js0n-pw", "js0n-tok"), ('"host": "db"',)),
    ("dict repr", "{'api-key': 'dict-s3cret', 'workers': '4'}",
     ("dict-s3cret",), ("'workers': '4'",)),
    ("escaped JSON", r'"{\"password\": \"esc-pw-9\"}"', ("esc-pw-9",), ("password",)),
    ("sk_live in text", "charge failed with key sk_live_4eC39HqLyjWDarjtT1zdp7dc",
     ("sk_live_4eC39HqLyjWDarjtT1zdp7dc",), ("charge failed with key",)),
    ("ghp in text", f"push with {GHP} failed", (GHP,), ("failed",)),
    ("slack xoxb", ["--slack", XOXB], (XOXB,), ("--slack",)),
    ("AWS key id", "using AKIAIOSFODNN7EXAMPLE in eu-west-1",
     ("AKIAIOSFODNN7EXAMPLE",), ("eu-west-1",)),
    ("JWT", ["--jwt-header", f"X-Forwarded: {JWT}"],
     (JWT, JWT.split(".")[2]), ("--jwt-header", "X-Forwarded:")),
    ("private key", ["--tls", PEM], ("MIIEowIBAAKCAQ", "Zx8Q=="), ("--tls",)),
    ("SECRET K=V", "DJANGO_SECRET_KEY=abc123", ("abc123",), ("DJANGO_SECRET_KEY=",)),
    ("TOKEN K=V", "export GITHUB_TOKEN=t0k3n-val", ("t0k3n-val",), ("export GITHUB_TOKEN=",)),
    ("PASSWD K=V", "DB_PASSWD=pa55wd", ("pa55wd",), ("DB_PASSWD=",)),
    ("PWD K=V", "MYSQL_PWD=my-pwd", ("my-pwd",), ("MYSQL_PWD=",)),
    ("CREDENTIAL K=V", "GOOGLE_CREDENTIALS=cr3d-blob", ("cr3d-blob",), ("GOOGLE_CREDENTIALS=",)),
    ("AUTH K=V", "BASIC_AUTH=admin:s3cr3t", ("admin:s3cr3t", "s3cr3t"), ("BASIC_AUTH=",)),
    ("DSN K=V", "SENTRY_DSN=https://abc123def@o1.ingest.sentry.io/1",
     ("abc123def",), ("SENTRY_DSN=",)),
    ("--key value", ["app", "--db-password", "hunter22", "--workers", "4"],
     ("hunter22",), ("--db-password", "--workers 4")),
    ("--key=value", ["app", "--api-key=k-9988", "--bind=0.0.0.0:80"],
     ("k-9988",), ("--api-key=", "--bind=0.0.0.0:80")),
    ("shell-quoted in text", "run --password 'two words' --workers 4",
     ("two words", "words"), ("--workers 4",)),
    ("requirepass", ["redis-server", "--requirepass", "rEq-pass"],
     ("rEq-pass",), ("--requirepass",)),
    ("short K=V", "TOKEN=ab", ("ab",), ("TOKEN=",)),
]
ORDINARY: list[tuple[str, list[str] | str]] = [
    ("gunicorn options", ["gunicorn", "--keep-alive", "5", "--workers", "4", "--bind",
                          "0.0.0.0:8000", "--access-logfile", "-", "mysite.wsgi:application"]),
    ("gunicorn -p is a pidfile", ["gunicorn", "-p", "/run/g.pid", "-u", "www-data", "app:wsgi"]),
    ("uvicorn key file", ["uvicorn", "--ssl-keyfile", "/etc/ssl/key.pem", "--host", "::1"]),
    ("mysql -p prompts", ["mysql", "-p", "shop"]),
    ("redis-cli port", ["redis-cli", "-p", "6380", "ping"]),
    ("plain URL", "GET https://example.com/path?page=2&q=hello#top"),
    ("ssh URL user", ["git", "clone", "ssh://git@github.com/o/r.git"]),
    ("at sign in a path", "see http://example.com/a:b@c"),
    ("e-mail", "mail admin@example.com about it"),
    ("settings env", ["gunicorn", "--env=DJANGO_SETTINGS_MODULE=site.settings", "--reload"]),
    ("key prefix", ["--key-prefix=app", "--author=Jane", "--max-requests", "1000"]),
    ("host and port", "listening on 127.0.0.1:8000, 4 workers, keep-alive 5"),
]
# fmt: on


def _shown(redact: Redactor, given: list[str] | str) -> str:
    """As the console prints it: a command line as ``--check`` and the "-- command:" note
    show it, text as a note or a finding."""
    return redact(given) if isinstance(given, str) else redact.command(given)


@pytest.mark.parametrize(
    ("given", "secrets", "kept"), [r[1:] for r in SHAPES], ids=[r[0] for r in SHAPES]
)
def test_every_shape_of_secret_is_masked(
    given: list[str] | str, secrets: tuple[str, ...], kept: tuple[str, ...]
) -> None:
    shown = _shown(Redactor(), given)
    assert MASK in shown and not [s for s in secrets if s in shown], shown
    assert all(k in shown for k in kept), shown


@pytest.mark.parametrize("given", [r[1] for r in ORDINARY], ids=[r[0] for r in ORDINARY])
def test_ordinary_values_are_not_masked(given: list[str] | str) -> None:
    assert _shown(Redactor(), given) == (given if isinstance(given, str) else shlex.join(given))


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
    from tui.engine.supervisor import Supervisor

    sup = Supervisor([], watchdog=False, redact=Redactor([PASSWORD]))
    found = Finding("error", "database-error", None, f"cannot connect as u:{PASSWORD}", "check it")
    assert sup.masked([found])[0].what == f"cannot connect as u:{MASK}"
    quoting = Finding("error", "database-error", None, "given host=db password=pw-7 port=x", "")
    assert sup.masked([quoting])[0].what == f"given host=db password={MASK} port=x"


def test_a_secret_found_in_the_environment_is_masked_where_it_appears_alone() -> None:
    """A DSN in ``DATABASE_URL`` (a name that is not secret) and a password in a conninfo:
    an error quoting the password alone is masked too."""
    environ = {"DATABASE_URL": "postgres://app:envpass99@db/shop", "PG": "host=db password=pgpw88"}
    redact = Redactor.for_project(None, environ=environ)
    assert redact("auth failed (envpass99, pgpw88)") == f"auth failed ({MASK}, {MASK})"


def test_settings_values_keep_their_shape_with_secrets_masked() -> None:
    """What the quit snippet prints as source: each ARGS shape, masked where it is secret."""
    redact = Redactor()
    args = {"env": "STRIPE_API_KEY=sk_live_abc123", "user": "admin:pw-1", "api-key": 1234,
            "workers": "4", "preload": None, "token": "t"}  # fmt: skip
    assert redact.value({"ARGS": args}) == {"ARGS": {
        "env": f"STRIPE_API_KEY={MASK}", "user": f"admin:{MASK}", "api-key": MASK,
        "workers": "4", "preload": None, "token": MASK,
    }}  # fmt: skip
    assert redact.value(["--token", "t", "-w", "4"]) == ["--token", MASK, "-w", "4"]
    assert (
        redact.value("run --password 'two words' -w 4", "ARGS") == f"run --password '{MASK}' -w 4"
    )


# The real program on settings that hold secrets in every shape ARGS and the environment can.
IN_ENV = {  # a DSN and a URL read from the environment by the settings, and a PG password
    "PG_CONN": "host=db user=app password=dsn-e2e-pw",
    "DATABASE_URL": "postgres://app:url-e2e-pw@db/shop",
    "PGPASSWORD": "pgpass-e2e-pw",
}
E2E_SECRETS = (
    "sk_live_e2eStripe0001", "r3dis-e2e-pw", "bearer-e2e-tok", "dsn-e2e-pw", "url-e2e-pw",
    "pgpass-e2e-pw", "mysql-e2e-pw", "two word-e2e", "word-e2e", "json-e2e-pw", "qs-e2e-tok",
    "user-e2e-pw", "p@ss-e2e", "ss-e2e", GHP, "cfg-err-tok", "django-insecure-e2e-key-000111",
    "web-url-pw",
)  # fmt: skip


def _shapes_project(folder: Path, port: int) -> dict[str, str]:
    """A project whose entries carry E2E_SECRETS; returns the environment to run it in."""
    (folder / "wsgiapp.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    idle = "echo up; sleep 60"  # sh runs this; the words after it are only its $0, $1...
    (folder / "s.py").write_text(
        textwrap.dedent(f"""
        import os
        SECRET_KEY = "django-insecure-e2e-key-000111"
        ALLOWED_HOSTS = ["127.0.0.1"]
        WSGI_APPLICATION = "wsgiapp.application"
        PRODUCTION_PROCESSES = {{
            "web": {{
                "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
                "ARGS": {{"bind": "127.0.0.1:{port}", "workers": "1",
                          "env": "STRIPE_API_KEY=sk_live_e2eStripe0001"}},
                "URL": "http://probe:web-url-pw@127.0.0.1:{port}",
            }},
            "cli": {{
                "BACKEND": "backends.command.Command",
                "ARGS": ["sh", "-c", {idle!r}, "redis-cli", "-a", "r3dis-e2e-pw",
                         "--header", "Authorization: Bearer bearer-e2e-tok",
                         "--conninfo", os.environ["PG_CONN"], os.environ["DATABASE_URL"],
                         "env", "PGPASSWORD=" + os.environ["PGPASSWORD"],
                         '{{"db": {{"password": "json-e2e-pw"}}}}',
                         "https://x.io/cb?access_token=qs-e2e-tok&a=1", "--user=admin:user-e2e-pw",
                         "redis://default:p@ss-e2e@cache:6379/0", "https://{GHP}@github.com/o/r"],
            }},
            "raw": {{
                "BACKEND": "backends.command.Command",
                "ARGS": "sh -c {idle!r} mysql -uroot -pmysql-e2e-pw --api-key 'two word-e2e' shop",
            }},
            "badurl": {{
                "BACKEND": "backends.command.Command", "ARGS": ["true"],
                "URL": "ftp://127.0.0.1/?access_token=cfg-err-tok",
            }},
        }}
        """)
    )
    env = {**os.environ, **IN_ENV, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def _leaked(text: str) -> list[str]:
    return [s for s in E2E_SECRETS if s in text]


def test_check_masks_secrets_of_every_shape_in_the_settings(tmp_path: Path) -> None:
    env = _shapes_project(tmp_path, free_port())
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--settings", "s", "--check"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert all(f"{name} " in out for name in ("web", "cli", "raw")), out
    assert "badurl  error" in out and "access_token=****" in out, out
    assert not _leaked(out), out


def test_headless_masks_secrets_of_every_shape_in_its_command_lines(tmp_path: Path) -> None:
    env = _shapes_project(tmp_path, free_port())
    console = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--settings", "s", "--headless"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert console.stdout is not None
    guard = threading.Timer(30, console.kill)  # a hang fails the test, it does not stall it
    guard.start()
    seen: list[str] = []
    waiting = {("web", "-- running"), ("cli", "up"), ("raw", "up")}
    try:
        for line in console.stdout:
            seen.append(line)
            head, _, said = line.partition(" | ")
            name = head.split()[-1:]
            waiting = {(n, w) for n, w in waiting if not (name == [n] and said.startswith(w))}
            if not waiting:
                console.send_signal(signal.SIGINT)
                waiting = {("", "never")}
        console.wait(timeout=30)
    finally:
        guard.cancel()
    out = "".join(seen)
    assert waiting == {("", "never")}, out
    assert [line for line in seen if "-- command: " in line and MASK in line], out
    assert not _leaked(out), out


@needs("tmux", lambda: None if shutil.which("tmux") else "not on PATH (a real pty)")
def test_the_screen_and_the_quit_snippet_mask_secrets_of_every_shape(tmp_path: Path) -> None:
    """Full screen in a real terminal: zoom web, scale it up, quit, read what quit printed."""
    env = _shapes_project(tmp_path, free_port())
    socket = str(tmp_path / "tmux.socket")
    (tmp_path / "tmux.conf").write_text("set -g remain-on-exit on\n")  # what quit printed stays

    def tmux(*args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", socket, *args], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout

    console = f"{shlex.quote(sys.executable)} -m tui.cli --settings s; echo console exited"
    size = ("-x", "160", "-y", "48")
    tmux("-f", str(tmp_path / "tmux.conf"), "new-session", "-d", "-c", str(tmp_path), *size)
    tmux("respawn-pane", "-k", "sh", "-c", console)
    try:
        screens: list[str] = []

        def shows(text: str) -> bool:
            screens.append(tmux("capture-pane", "-p", "-J", "-S", "-"))
            return text in screens[-1]

        poll(lambda: shows("● 3 running"), "every entry running", screens)
        tmux("send-keys", "1", "z", "+")  # web alone, full width: its title has room for its URL
        poll(lambda: shows("workers 2/1"), "web scaled to 2 workers", screens)
        assert "http://probe:****@127.0.0.1" in screens[-1], screens[-1]
        tmux("send-keys", "q")
        poll(lambda: shows("console exited"), "exit after q", screens)
    finally:
        subprocess.run(["tmux", "-S", socket, "kill-server"], capture_output=True)
    printed = screens[-1]
    assert "(web workers 1 -> 2)" in printed and "'STRIPE_API_KEY=****'" in printed, printed
    leaks = {(secret, n) for n, screen in enumerate(screens) for secret in _leaked(screen)}
    assert not leaks, (leaks, screens[min(leaks)[1]] if leaks else "")


def poll(ready: Callable[[], bool], what: str, screens: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s:\n{screens[-1:]}"
        time.sleep(0.1)
