"""A config in the shape of django-prodserver's own test settings runs unchanged.

Several servers and a Celery worker in one dict, ARGS as django-prodserver users write them
(two uvicorns left on their default port: one of them must fail alone, in its own pane).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import free_port, tree, wait_gone
from needs import needs, nothing_on
from test_cli import headless

REPO = Path(__file__).resolve().parent.parent

SETTINGS = """
from djproject.settings import *  # noqa: F403

ASGI_APPLICATION = "djproject.asgi.application"
PRODUCTION_PROCESSES = {{
    "web-g": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{"bind": "0.0.0.0:{g}", "workers": "2"}},
    }},
    "web-w": {{
        "BACKEND": "django_prodserver.backends.waitress.WaitressServer",
        "ARGS": {{"listen": "127.0.0.1:{w}"}},
    }},
    "web-u": {{
        "BACKEND": "django_prodserver.backends.uvicorn.UvicornServer",
        "ARGS": {{"port": "{u}"}},
    }},
    "web-uw": {{
        "BACKEND": "django_prodserver.backends.uvicorn.UvicornWSGIServer",
        "ARGS": {{"port": "{u}"}},
    }},
    "worker-celery": {{
        "BACKEND": "django_prodserver.backends.celery.CeleryWorker",
        "APP": "djproject.celery.app",
        "ARGS": {{}},
    }},
    "worker": {{
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {{}},
    }},
}}
"""


@needs("Redis (for the Celery worker)", lambda: nothing_on("127.0.0.1", 6379))
def test_django_prodserver_style_config_checks_and_runs(djproject: Path) -> None:
    ports = {"g": free_port(), "w": free_port(), "u": free_port()}
    (djproject / "prodserver_settings.py").write_text(SETTINGS.format(**ports))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    check = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--check", "--settings", "prodserver_settings"],
        cwd=djproject,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # Each entry's line (its command under it); not the advice that follows them (this
    # project's default SQLite settings get the locking one).
    commands = [x for x in check.stdout.splitlines() if not x.startswith((" ", "warning", "info"))]
    assert [line.split()[0] for line in commands] == [
        "web-g", "web-w", "web-u", "web-uw", "worker-celery", "worker"
    ]  # fmt: skip

    run = headless(djproject, "--settings", "prodserver_settings")

    def said(name: str, text: str) -> bool:
        return any(f" {name} " in line and text in line for line in run.lines)

    try:
        deadline = time.monotonic() + 60
        wanted = [
            ("web-g", "-- ready in"),
            ("web-w", "-- ready in"),
            ("worker-celery", "-- running"),
            ("worker", "-- running"),
        ]

        def uvicorns_done() -> bool:
            """The two uvicorns share a port: one serves, the other fails alone, saying why."""
            return any(said(n, "-- ready in") for n in ("web-u", "web-uw")) and any(
                said(n, "address already in use") for n in ("web-u", "web-uw")
            )

        while time.monotonic() < deadline and not (
            all(said(*w) for w in wanted) and uvicorns_done()
        ):
            time.sleep(0.2)
        missing = [w for w in wanted if not said(*w)]
        assert not missing and uvicorns_done(), "\n".join([str(missing), *run.lines[-40:]])
        pids = tree(run.proc.pid)[1:]
        run.proc.send_signal(signal.SIGTERM)
        run.proc.wait(timeout=60)
        assert wait_gone(pids, timeout=10) == []
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            time.sleep(0.5)
