"""waitress serving the project's WSGI application, as django-prodserver's WaitressServer does.

django-prodserver calls ``waitress.runner.run(["waitress", *ARGS, app])`` (the ``waitress-serve``
runner). The child runs that same runner, through a one-line launcher rather than
``python -m waitress`` for two reasons: waitress's ``__main__`` drops the runner's exit code (a
bad option or app exits 0), and waitress installs no signal handlers, so SIGTERM would kill it
mid-request while Ctrl-C (KeyboardInterrupt) lets busy threads finish (up to 5 s). The launcher
makes SIGTERM behave like Ctrl-C and exits with the runner's code.
"""

from __future__ import annotations

from backends.base import Backend, Knob, flags_from_dict, require_module
from backends.gunicorn import wsgi_target
from backends.uvicorn import http_url

LAUNCHER = (
    "import signal, sys; from waitress.runner import run; "
    "signal.signal(signal.SIGTERM, signal.default_int_handler); "
    "sys.exit(run(['waitress-serve', *sys.argv[1:]]))"
)


class WaitressServer(Backend):
    """ARGS ``{"host": ..., "port": ..., "threads": ...}`` or ``{"listen": "host:port"}``."""

    kind = "waitress"
    main_knob = "threads"
    # One process; its thread count is fixed at start, so it changes by a restart.
    knobs = (Knob("threads", default=4),)  # waitress's own default
    # waitress gives busy threads 5 s after the interrupt, then exits.
    grace = 10.0

    def argv(self) -> list[str]:
        require_module(self.name, "waitress", "waitress")
        flags = flags_from_dict({**self.options, **self.scale})
        return [self.project.python, "-c", LAUNCHER, *flags, *self.extra, wsgi_target(self)]

    def url(self) -> str | None:
        if "unix-socket" in self.options:
            return None
        listen = self.options.get("listen")
        if listen:  # "host:port", "[::1]:port" or "*:port"; several may be given, space apart
            host, sep, port = str(listen).split()[0].rpartition(":")
            return http_url(host, port) if sep and port.isdigit() else None
        return http_url(self.options.get("host") or "0.0.0.0", self.options.get("port") or 8080)
