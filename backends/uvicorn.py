"""uvicorn serving the project's ASGI (or WSGI) application, as django-prodserver's backends do.

django-prodserver calls ``uvicorn.main.main([app, *ARGS])`` inside its own process; running
``python -m uvicorn`` with the same arguments gives the same server as a child the console can
signal, sample and restart. The ASGI application lookup, the URL built from host and port and
the servers' own shutdown deadline live here and are shared with granian and waitress.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from backends.base import Backend, ConfigError, Knob, Project, flags_from_dict, require_module
from backends.gunicorn import app_target, wsgi_target


class UvicornServer(Backend):
    """ARGS ``{"host": ..., "port": ..., "workers": ...}`` are uvicorn's own options."""

    kind = "uvicorn"
    main_knob = "workers"
    # uvicorn's TTIN / TTOU exist only under its multiprocess manager (started with workers > 1);
    # a single-process uvicorn would be suspended by SIGTTIN. So workers change by a restart.
    knobs = (Knob("workers"),)
    # uvicorn waits for open connections (a websocket: for ever) unless told otherwise; it is
    # told to give up a little before GRACE (own_deadline), so it exits cleanly, not by SIGKILL.
    grace = 30.0

    def argv(self) -> list[str]:
        require_module(self.name, "uvicorn", "uvicorn")
        deadline = {"timeout-graceful-shutdown": own_deadline(self.grace)}  # ARGS may override
        flags = flags_from_dict({**deadline, **self.options, **self.scale})
        return [
            self.project.python,
            "-m",
            "uvicorn",
            *self.interface(),
            *flags,
            *self.extra,
            self.target(),
        ]

    def interface(self) -> list[str]:
        """Flags that come before ARGS, so that ARGS may still override them (click: last wins)."""
        return []

    def target(self) -> str:
        return asgi_target(self)

    def url(self) -> str | None:
        if "uds" in self.options or "fd" in self.options:
            return None
        return http_url(self.options.get("host") or "127.0.0.1", self.options.get("port") or 8000)


class UvicornWSGIServer(UvicornServer):
    """The project's WSGI application through uvicorn's (deprecated) WSGI interface."""

    def interface(self) -> list[str]:
        return ["--interface=wsgi"]

    def target(self) -> str:
        return wsgi_target(self)


def asgi_target(backend: Backend) -> str:
    """``ASGI_APPLICATION`` when set (Channels and Daphne use it), else the ``asgi`` module
    that ``startproject`` writes next to the WSGI one: ``mysite.wsgi.application`` ->
    ``mysite.asgi:application``. django-prodserver requires ASGI_APPLICATION, which plain
    Django projects do not set.
    """
    target = app_target(backend, "ASGI_APPLICATION")
    if target is not None:
        return target
    wsgi = getattr(backend.project.settings, "WSGI_APPLICATION", None)
    if isinstance(wsgi, str) and "." in wsgi:
        package = wsgi.rpartition(".")[0].rpartition(".")[0]
        module = f"{package}.asgi" if package else "asgi"
        if _findable(backend.project, module):
            return f"{module}:application"
        missing = f"{module.replace('.', '/')}.py was not found"
    else:
        missing = "WSGI_APPLICATION is not set either"
    raise ConfigError(
        f"{backend.name}: settings.ASGI_APPLICATION is not set and {missing}; "
        'set ASGI_APPLICATION to your ASGI callable, e.g. "mysite.asgi.application"'
    )


def _findable(project: Project, module: str) -> bool:
    """Look first where the child will look (its PYTHONPATH, its working folder) without
    importing; then ask the import system (it imports the parent package), for installed ones."""
    relative = Path(*module.split("."))
    for root in (*project.pythonpath, project.base_dir):
        base = Path(root) / relative
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    try:
        return importlib.util.find_spec(module) is not None
    except Exception:  # a parent package that fails to import: not findable, say so
        return False


def own_deadline(grace: float) -> int:
    """Seconds a server may spend on its own graceful shutdown so that it ends it itself (closing
    what is left) before the console's SIGKILL at GRACE: 5 s less, or a fifth less when short."""
    return max(1, math.floor(grace - min(5.0, grace / 5)))


def http_url(host: object, port: object) -> str:
    """Where a server bound to host and port answers; ``*`` means every interface."""
    text = str(host).strip("[]")
    text = "0.0.0.0" if text in ("", "*") else text
    return f"http://[{text}]:{port}" if ":" in text else f"http://{text}:{port}"
