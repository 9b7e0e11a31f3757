"""gunicorn serving the project's WSGI application, as django-prodserver's GunicornServer does."""

from __future__ import annotations

import signal

from backends.base import Backend, ConfigError, Knob, flags_from_dict, require_module, shown


class GunicornServer(Backend):
    kind = "gunicorn"
    main_knob = "workers"
    knobs = (
        Knob("workers", up=signal.SIGTTIN, down=signal.SIGTTOU, children=True),
        Knob("threads"),
    )
    # gunicorn's own graceful_timeout is 30 s; wait a little longer before SIGKILL.
    grace = 35.0

    def argv(self) -> list[str]:
        require_module(self.name, "gunicorn", "gunicorn")
        flags = flags_from_dict({**self.options, **self.scale})
        return [self.project.python, "-m", "gunicorn", *flags, *self.extra, wsgi_target(self)]

    def url(self) -> str | None:
        bind = str(self.options.get("bind") or "127.0.0.1:8000")
        return None if bind.startswith(("unix:", "fd://")) else f"http://{bind}"


def wsgi_target(backend: Backend) -> str:
    """``WSGI_APPLICATION = "proj.wsgi.application"`` -> ``proj.wsgi:application``."""
    target = app_target(backend, "WSGI_APPLICATION")
    if target is None:
        raise ConfigError(
            f"{backend.name}: settings.WSGI_APPLICATION is not set; "
            'set it to your WSGI callable, e.g. "mysite.wsgi.application"'
        )
    return target


def app_target(backend: Backend, setting: str) -> str | None:
    """A settings path to an application as servers want it (``module:attr``); None if unset."""
    path = getattr(backend.project.settings, setting, None)
    if path is None:
        return None
    if not isinstance(path, str) or "." not in path:
        kind = setting.split("_")[0]
        raise ConfigError(
            f"{backend.name}: settings.{setting} = {shown(path)} is not a dotted path; "
            f'set it to your {kind} callable, e.g. "mysite.{kind.lower()}.application"'
        )
    module, _, attr = path.rpartition(".")
    return f"{module}:{attr}"
