"""Find the Django project, load its settings, and turn PRODUCTION_PROCESSES into entries.

Discovery follows Django's own habits (``--settings``, ``DJANGO_SETTINGS_MODULE``, then the
``manage.py`` next to you) so the console works wherever ``manage.py`` would. An entry that is
wrong becomes an :class:`Entry` carrying its one-line error instead of stopping the others.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import Backend, ConfigError, Launch, Project, one_line, shown
from backends.registry import resolve
from tui import envfile


class ProjectError(Exception):
    """The whole project cannot be run (exit 2): one line naming the problem and the fix."""


NOT_FOUND = (
    "no Django settings found: pass --settings MODULE, set DJANGO_SETTINGS_MODULE, "
    "or run from the folder that holds manage.py"
)


def settings_from_manage_py(path: Path) -> str | None:
    """Read manage.py's ``setdefault("DJANGO_SETTINGS_MODULE", ...)`` without running it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setdefault"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            and node.args[0].value == "DJANGO_SETTINGS_MODULE"  # type: ignore[attr-defined]
        ):
            return str(node.args[1].value)  # type: ignore[attr-defined]
    return None


def discover(
    settings: str | None,
    pythonpath: Sequence[str],
    cwd: Path,
    env_files: Sequence[str] = (),
    load_env: bool = True,
) -> Project:
    """Load the .env files (``tui.envfile``), decide the settings module and import path, then
    import the settings. The files come first: they may name DJANGO_SETTINGS_MODULE, and the
    settings read DATABASE_URL and the like from the environment when they load."""
    try:
        loaded = envfile.load(env_files, cwd, enabled=load_env)
    except envfile.EnvFileError as e:
        raise ProjectError(str(e)) from e
    # The current folder is importable, as under ``python -m django``, which is how children run.
    extra = [*(str(Path(p).resolve()) for p in pythonpath), str(cwd)]
    module = settings or os.environ.get("DJANGO_SETTINGS_MODULE")
    manage = cwd / "manage.py"
    if not module and manage.is_file():
        module = settings_from_manage_py(manage)
    if not module:
        raise ProjectError(NOT_FOUND)
    return Project(
        settings_module=module,
        base_dir=str(cwd),
        pythonpath=tuple(dict.fromkeys(extra)),
        settings=load_settings(module, extra),
        env_files=tuple(envfile.describe(file) for file in loaded),
        findings=tuple(f for file in loaded for f in file.findings),
    )


def load_settings(module: str, pythonpath: Sequence[str]) -> Any:
    for path in reversed(pythonpath):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = module
    try:
        settings = _import_settings(module)
    except ImportError as e:
        raise ProjectError(
            f"cannot import settings {module!r} ({e}); fix --settings or add its folder with "
            "--pythonpath"
        ) from e
    except Exception as e:  # settings are user code: any error must become one line
        raise ProjectError(f"settings {module!r} failed to load: {type(e).__name__}: {e}") from e
    return settings


def _import_settings(module: str) -> Any:
    """Django sets ``TZ`` to TIME_ZONE when settings load; the console keeps the user's clock."""
    tz = os.environ.get("TZ")
    importlib.import_module(module)
    from django.conf import settings

    settings.SETTINGS_MODULE  # noqa: B018  (loads them now, inside the caller's error handling)
    if tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = tz
    time.tzset()
    return settings


@dataclass
class Entry:
    """One PRODUCTION_PROCESSES entry: a backend ready to launch, or the error that stops it."""

    name: str
    backend: Backend | None
    error: str | None = None

    @property
    def kind(self) -> str:
        return self.backend.kind if self.backend else "error"

    def launch(self) -> Launch:
        if self.backend is None:
            raise ConfigError(self.error or f"{self.name}: not runnable")
        return self.backend.launch()

    def prepare(self) -> None:
        """Before a start: make the private folders the launch names (``Backend.prepare``)."""
        if self.backend is None:
            raise ConfigError(self.error or f"{self.name}: not runnable")
        self.backend.prepare()


EXAMPLE = (
    'PRODUCTION_PROCESSES = {"web": {"BACKEND": '
    '"django_prodserver.backends.gunicorn.GunicornServer", "ARGS": {"bind": "127.0.0.1:8000"}}}'
)


def entries(project: Project, only: Sequence[str] = ()) -> list[Entry]:
    """Every entry (or the ``only`` ones), each validated on its own."""
    processes = getattr(project.settings, "PRODUCTION_PROCESSES", None)
    where = f"settings {project.settings_module!r}"
    if processes is None:
        raise ProjectError(f"{where} has no PRODUCTION_PROCESSES; add one, e.g. {EXAMPLE}")
    if not isinstance(processes, dict):
        raise ProjectError(
            f"{where}: PRODUCTION_PROCESSES must be a dict of name -> entry, "
            f"got {type(processes).__name__}; e.g. {EXAMPLE}"
        )
    if not processes:
        raise ProjectError(f"{where}: PRODUCTION_PROCESSES is empty; add an entry, e.g. {EXAMPLE}")
    names = [name if isinstance(name, str) else shown(name) for name in processes]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ProjectError(
            f"no entry named {', '.join(map(repr, unknown))} in PRODUCTION_PROCESSES; "
            f"choose from: {', '.join(map(one_line, names))}"
        )
    return _unique(
        [
            build_entry(name, spec, project)
            for name, spec in processes.items()
            if not only or name in only
        ]
    )


def _unique(found: list[Entry]) -> list[Entry]:
    """Names key the console's processes: an error entry named after a bad key (the number 1)
    must not hide a good one named "1". Only error entries are renamed; good names are the
    dict's own keys, unique already."""
    taken = {entry.name for entry in found if entry.error is None}
    for entry in found:
        if entry.error is not None:
            base, n = entry.name, 1
            while entry.name in taken:
                n += 1
                entry.name = f"{base} ({n})"
            taken.add(entry.name)
    return found


MAX_NAME = 64  # a name prefixes every headless line and titles a pane


def build_entry(name: object, spec: object, project: Project) -> Entry:
    """Never raises: whatever the settings hold, the result is a runnable entry or one line.

    A name that is not a short printable string is an error of its own (it would be printed
    before every line of output, escape sequences and all); the entry is then named by its
    quoted, escaped form, which entries() renames if a good entry has that name.
    """
    if not (isinstance(name, str) and name.strip() and name.isprintable()):
        return Entry(shown(name), None, f"{shown(name)}: {_NAME_RULE}")
    if len(name) > MAX_NAME:
        return Entry(one_line(name, MAX_NAME), None, f"{shown(name)}: {_NAME_RULE}")
    try:
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{name}: entry must be a dict with BACKEND and ARGS, got {type(spec).__name__}"
            )
        backend = resolve(name, spec.get("BACKEND"))(name, spec, project)
        backend.launch()  # validates what only a launch can tell (installed? WSGI app set?)
    except ConfigError as e:
        return Entry(name, None, one_line(str(e)))
    except (Exception, SystemExit) as e:  # a user's own backend class may fail in any way
        return Entry(name, None, one_line(f"{name}: backend failed: {type(e).__name__}: {e}"))
    return Entry(name, backend)


_NAME_RULE = (
    f'entry names must be strings of 1 to {MAX_NAME} printable characters, e.g. "web" or "worker-2"'
)
