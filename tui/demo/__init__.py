"""The bundled demo: a small Django project (SQLite) with a web server, two workers and a load.

``prepare()`` migrates in a subprocess because the console never needs the database itself:
it only supervises children. Running ``migrate`` in-process would configure Django, open a
connection and pin this settings module inside the console for the rest of its life; a child
process keeps the console's interpreter clean and reports failure as plain output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backends import private

SETTINGS_MODULE = "tui.demo.settings"

# How much of a failed migrate's output to put in the error: enough for the traceback's end.
_TAIL_LINES = 20


def prepare(check: bool = False) -> str:
    """Make sure the demo's private folder and database exist and are migrated; return the
    settings module name. ``check`` only checks what exists, and writes nothing."""
    from tui.demo.settings import DATA_DIR, DB_FILE

    try:
        private.folder(DATA_DIR, make=not check)
        private.file(DB_FILE, make=not check)
    except private.UnsafePath as e:
        raise RuntimeError(f"demo: {e} (or set PRODSERVER_TUI_DEMO_DIR)") from e
    if check:
        return SETTINGS_MODULE
    # The folder holding the ``tui`` package, so the child imports this copy from any cwd.
    root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, "PYTHONPATH": pythonpath}
    proc = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-_TAIL_LINES:])
        raise RuntimeError(f"demo migrate failed (exit {proc.returncode}):\n{tail}")
    return SETTINGS_MODULE
