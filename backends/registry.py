"""BACKEND dotted path -> backend class.

Accepts django-prodserver's 2.x spelling (``django_prodserver.backends.gunicorn.GunicornServer``),
its 3.x spelling (``...backends.servers.gunicorn...`` / ``...backends.workers.celery...``), and
this project's own classes (or any importable ``Backend`` subclass a project writes).
"""

from __future__ import annotations

import importlib

from backends.base import Backend, ConfigError, one_line, shown

_PRODSERVER_PREFIXES = (
    "django_prodserver.backends.servers.",
    "django_prodserver.backends.workers.",
    "django_prodserver.backends.",
)

# "module.Class" below django-prodserver's prefix -> our class
_IMPLEMENTED = {
    "gunicorn.GunicornServer": "backends.gunicorn.GunicornServer",
    "django_tasks.DjangoTasksWorker": "backends.django_tasks.DjangoTasksWorker",
    "uvicorn.UvicornServer": "backends.uvicorn.UvicornServer",
    "uvicorn.UvicornWSGIServer": "backends.uvicorn.UvicornWSGIServer",
    "granian.GranianASGIServer": "backends.granian.GranianASGIServer",
    "granian.GranianWSGIServer": "backends.granian.GranianWSGIServer",
    "waitress.WaitressServer": "backends.waitress.WaitressServer",
    "celery.CeleryWorker": "backends.celery.CeleryWorker",
    "celery.CeleryBeat": "backends.celery.CeleryBeat",
}

# Known django-prodserver backends that prodserver-tui cannot run yet.
_PLANNED = {
    "django_q2.DjangoQ2Worker",
}

COMMAND_HINT = "backends.command.Command with ARGS as an argv list"


def resolve(name: str, path: object) -> type[Backend]:
    if path is None or (isinstance(path, str) and not path):
        raise ConfigError(
            f'{name}: BACKEND is missing; add e.g. "BACKEND": '
            '"django_prodserver.backends.gunicorn.GunicornServer"'
        )
    if not isinstance(path, str):
        raise ConfigError(
            f"{name}: BACKEND must be a dotted path (a string), got {shown(path)}; write e.g. "
            '"BACKEND": "django_prodserver.backends.gunicorn.GunicornServer"'
        )
    for prefix in _PRODSERVER_PREFIXES:
        if path.startswith(prefix):
            short = path.removeprefix(prefix)
            if short in _IMPLEMENTED:
                return _import(name, _IMPLEMENTED[short])
            if short in _PLANNED:
                raise ConfigError(
                    f"{name}: {path.rsplit('.', 1)[1]} is not supported yet by prodserver-tui; "
                    f"meanwhile run it with {COMMAND_HINT}"
                )
            break
    return _import(name, path)


def _import(name: str, path: str) -> type[Backend]:
    module_name, _, class_name = path.rpartition(".")
    known = ", ".join(sorted(_IMPLEMENTED))
    try:
        module = importlib.import_module(module_name) if module_name else None
    # A relative path (".x.Y") is a TypeError, a NUL or an empty part a ValueError: all typos.
    except (ImportError, TypeError, ValueError) as e:
        raise ConfigError(
            f"{name}: BACKEND {shown(path)} cannot be imported ({one_line(str(e), 120)}); "
            f"check the spelling, known: {known}"
        ) from e
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)) or cls is Backend:
        raise ConfigError(
            f"{name}: BACKEND {shown(path)} is not a prodserver-tui backend; use one of: {known}, "
            "backends.runserver.RunServer, backends.command.Command"
        )
    return cls
