"""granian serving the project's ASGI or WSGI application, as django-prodserver's backends do.

django-prodserver builds ``granian.Granian(target, interface, **kwargs)`` from a fixed table of
ARGS names (with aliases such as ``address`` for ``host`` and ``threads`` for blocking threads)
and silently drops any other key. Running ``python -m granian`` gives the same server as a child
the console can signal and restart; that table is translated to granian's CLI flags here, and
other keys pass through as ``--key=value`` so that granian itself rejects a misspelt one.
"""

from __future__ import annotations

from collections.abc import Mapping

from backends.base import Backend, Knob, ScalarArg, flags_from_dict, require_module
from backends.gunicorn import wsgi_target
from backends.uvicorn import asgi_target, http_url, own_deadline

# django-prodserver's ARGS name (dashes or underscores) -> granian's CLI flag
RENAMED = {
    "address": "host",
    "threads": "blocking-threads",
    "ssl-cert": "ssl-certificate",
    "ssl-key": "ssl-keyfile",
}
# django-prodserver reads these as booleans ("true", "1", "yes", "on"): CLI --flag / --no-flag
SWITCHES = {"websockets": "ws", "log-access": "access-log", "reload": "reload"}


class GranianASGIServer(Backend):
    """ARGS ``{"address": ..., "port": ..., "workers": ..., "threads": ...}``."""

    kind = "granian"
    main_knob = "workers"
    # granian only respawns its workers on SIGHUP; their number changes by a restart.
    knobs = (Knob("workers"),)
    # granian waits for its workers without limit unless --workers-kill-timeout is set; it is
    # set a little below GRACE (own_deadline) so granian kills a stuck worker and exits itself.
    grace = 30.0
    interface = "asgi"

    def argv(self) -> list[str]:
        require_module(self.name, "granian", "granian")
        deadline = {"workers-kill-timeout": own_deadline(self.grace)}  # ARGS may override
        flags = flags_from_dict(granian_options({**deadline, **self.options, **self.scale}))
        return [
            self.project.python,
            "-m",
            "granian",
            *flags,
            *self.extra,
            # django-prodserver fixes the interface by class; ARGS cannot change it
            f"--interface={self.interface}",
            self.target(),
        ]

    def target(self) -> str:
        return asgi_target(self)

    def url(self) -> str | None:
        options = granian_options(self.options)
        if "uds" in options:
            return None
        return http_url(options.get("host") or "127.0.0.1", options.get("port") or 8000)

    def notes(self) -> list[str]:
        """Say which ARGS got granian's own flag names, since the command line shows those."""
        moved = [
            f"{key} -> --{next(iter(granian_options({key: value})))}"
            for key, value in self.options.items()
            if _dashed(key) in RENAMED or _dashed(key) in SWITCHES
        ]
        return [f"ARGS in django-prodserver's names: {', '.join(moved)}"] if moved else []


class GranianWSGIServer(GranianASGIServer):
    interface = "wsgi"

    def target(self) -> str:
        return wsgi_target(self)


def granian_options(args: Mapping[str, ScalarArg]) -> dict[str, ScalarArg]:
    """django-prodserver's ARGS -> granian's CLI options (``None`` values become bare flags)."""
    options: dict[str, ScalarArg] = {}
    for key, value in args.items():
        name = _dashed(key)
        if name in SWITCHES:
            on = value is None or str(value).lower() in ("true", "1", "yes", "on")
            options[SWITCHES[name] if on else f"no-{SWITCHES[name]}"] = None
        else:
            options[RENAMED.get(name, name)] = value
    return options


def _dashed(key: str) -> str:
    return key.replace("_", "-")
