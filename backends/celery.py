"""Celery worker and beat, as django-prodserver's ``CeleryWorker`` / ``CeleryBeat`` run them.

django-prodserver imports the entry's ``APP`` (``"mysite.celery.app"``) and calls
``app.start(argv=["worker", *ARGS])``: the same as ``celery --app=APP worker ARGS``, which is
what the child runs here (Celery's ``--app`` takes that dotted form and ``mysite.celery:app``).

Where this differs from a bare ``celery worker``, and why:

- The pool size (``concurrency``) is always passed, so the console shows the real number:
  ARGS, else ``CELERY_WORKER_CONCURRENCY`` from settings, else the CPU count (Celery's own
  default). It changes live by ``celery control pool_grow`` / ``pool_shrink`` sent to this
  worker only, which needs a node name known in advance: ``<entry name>@<host>`` unless ARGS
  sets ``hostname``.
- SIGTERM goes to the main process only (``stop_group = False``): Celery's pool processes
  reset SIGTERM to its default, so a tree-wide SIGTERM kills running tasks (WorkerLostError),
  while the main process alone takes it as a warm shutdown (no new tasks, running ones
  finish, exit 0). SIGKILL after the grace period still reaches the whole tree.
- ``loglevel`` defaults to INFO: at Celery's WARNING the pane stays silent after the banner.
- Beat keeps its schedule file in the user's state folder, not in the project: a private
  folder (``backends.private``), never a shared one, because the schedule is a pickle that
  beat loads. Beat runs with umask 077, so the files it writes there are 0600.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from backends import private
from backends.base import (
    Backend,
    ConfigError,
    Knob,
    Project,
    ScalarArg,
    flags_from_dict,
    positive_int,
    require_module,
)

# Short flags a raw ARGS list may use for the options read here.
_SHORT = {"concurrency": "-c", "hostname": "-n", "pool": "-P", "loglevel": "-l", "schedule": "-s"}
_FIXED_POOLS = {"solo", "threads"}  # pools without grow / shrink
_PROCESS_POOLS = {"prefork", "processes"}  # pools whose size is the main process's children


class _Celery(Backend):
    """What worker and beat share: the APP key, ARGS as options, ``python -m celery``."""

    command: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]  # options looked for in a raw ARGS list as well
    keys = Backend.keys | {"APP"}

    def __init__(self, name: str, entry: Mapping[str, Any], project: Project) -> None:
        super().__init__(name, entry, project)
        app = entry.get("APP")
        if not isinstance(app, str) or not app.strip():
            raise ConfigError(
                f'{name}: APP is missing; name the Celery app in the entry, e.g. "APP": '
                '"mysite.celery.app"'
            )
        self.app = app.strip()
        # Celery's options are all spelled with dashes; settings often use underscores.
        self.options = {k.replace("_", "-"): v for k, v in self.options.items()}
        self.extra, found = _take(self.extra, self.reads)
        self.options.update(found)
        if "detach" in self.options or {"-D", "--detach"} & set(self.extra):
            raise ConfigError(f"{name}: ARGS detach takes Celery out of the console; remove it")

    def argv(self) -> list[str]:
        require_module(self.name, "celery", "celery")
        flags = flags_from_dict({"loglevel": "INFO", **self.options, **self.fixed()})
        celery = [self.project.python, "-m", "celery", f"--app={self.app}"]
        return [*celery, self.command, *flags, *self.extra]

    def fixed(self) -> dict[str, ScalarArg]:
        """Options set by the backend on top of ARGS."""
        return {}


class CeleryWorker(_Celery):
    """ARGS as ``celery worker`` options, e.g. ``{"concurrency": 4, "queues": "a,b"}``."""

    kind = "celery"
    command = "worker"
    reads = ("concurrency", "hostname", "pool", "autoscale", "loglevel")
    main_knob = "concurrency"
    knobs = (Knob("concurrency", default=os.cpu_count() or 2, by_command=True, children=True),)
    stop_signal = signal.SIGTERM
    stop_group = False
    grace = 30.0  # the warm shutdown waits for running tasks; longer ones die after this
    ready_pattern = r"@\S+ ready\.$"

    def events_pattern(self) -> str:
        """Task outcomes from the worker's own INFO lines (``Task x[id] succeeded in 0.1s``):
        0.9 µs a line in the console, where Celery events would cost the worker 30-60 % more
        CPU per task and ``inspect stats`` has no failures."""
        return r"\bTask \S+\[[^\]]+\] (succeeded|raised|retry)"

    def __init__(self, name: str, entry: Mapping[str, Any], project: Project) -> None:
        super().__init__(name, entry, project)
        given = self.options.pop("concurrency", None)
        if given is None:
            given = getattr(project.settings, "CELERY_WORKER_CONCURRENCY", None)
            given = given if isinstance(given, int) and not isinstance(given, bool) else None
        if given is not None:
            self.scale["concurrency"] = positive_int(name, "concurrency", given)
            self.configured = dict(self.scale)

    @property
    def nodename(self) -> str:
        """What Celery calls this worker, expanded here so ``--destination`` can name it."""
        return expand_nodename(str(self.options.get("hostname") or f"{self.name}@%h"))

    def fixed(self) -> dict[str, ScalarArg]:
        return {**self.scale, "hostname": self.nodename}

    def notes(self) -> list[str]:
        auto = ["autoscale is on: Celery sizes the pool, not concurrency"]
        return [f"node {self.nodename}", *(auto if "autoscale" in self.options else [])]

    def counts_children(self, knob: Knob) -> bool:
        """Only the prefork pool's units are processes; a gevent pool's are not."""
        return str(self.options.get("pool") or "prefork") in _PROCESS_POOLS

    def scale_argv(self, knob: str, before: int, wanted: int, pid: int) -> list[str]:
        pool = str(self.options.get("pool") or "prefork")
        if "autoscale" in self.options or pool in _FIXED_POOLS:
            why = "autoscale sizes the pool" if "autoscale" in self.options else f"{pool} pool"
            raise ConfigError(
                f"{self.name}: {knob} cannot change while it runs ({why}); "
                f"restart {self.name} to apply {wanted}"
            )
        verb = "pool_grow" if wanted > before else "pool_shrink"
        celery = [self.project.python, "-m", "celery", f"--app={self.app}"]
        return [
            *celery,
            "control",
            verb,
            str(abs(wanted - before)),
            f"--destination={self.nodename}",
        ]


class CeleryBeat(_Celery):
    """The scheduler: one process, nothing to scale; SIGTERM makes it save its schedule."""

    kind = "beat"
    command = "beat"
    runs_django = False  # one scheduler process, at most one connection: not counted
    reads = ("loglevel", "schedule")
    grace = 10.0
    umask = 0o077  # what beat writes into our private folder is 0600

    def fixed(self) -> dict[str, ScalarArg]:
        if "schedule" in self.options:
            return {}
        return {"schedule": str(self._schedule(make=False))}

    def notes(self) -> list[str]:
        return [f"schedule file {self.options.get('schedule') or self.fixed()['schedule']}"]

    def prepare(self) -> None:
        super().prepare()
        self._schedule(make=True)

    def _schedule(self, make: bool) -> Path:
        """The schedule file, checked (and its folder made, when ``make``): ours or refused.
        Celery's shelve may add a suffix (``.db``; ``.dat``, ``.dir``, ``.bak``): each file
        beginning with the name is checked."""
        given = self.options.get("schedule")
        try:
            if given is None:
                folder = private.folder(state_folder() / "celerybeat", make=make)
                path = folder / schedule_name(self.name, self.project.base_dir)
            else:
                path = private.file(Path(self.project.base_dir, str(given)))
            for found in path.parent.glob(f"{glob.escape(path.name)}*"):
                private.file(found, make=make)
        except private.UnsafePath as e:
            raise ConfigError(
                f"{self.name}: the beat schedule is not private: {e} "
                '(or set XDG_STATE_HOME, or ARGS "schedule")'
            ) from e
        return path


def expand_nodename(hostname: str) -> str:
    """Celery's ``--hostname`` rule: ``name@host`` (name defaults to "celery"), with %h, %n, %d."""
    name, sep, host = hostname.partition("@")
    if not sep:
        name, host = "", hostname
    full = socket.gethostname()
    short, _, domain = full.partition(".")
    node = f"{name or 'celery'}@{host or full}"
    for key, value in (("%h", full), ("%n", short), ("%d", domain)):
        node = node.replace(key, value)
    return node


def state_folder() -> Path:
    """``$XDG_STATE_HOME/prodserver-tui`` (``~/.local/state`` unset); never a shared folder."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "prodserver-tui"


def schedule_name(name: str, base_dir: str) -> str:
    """One file per project and entry. The entry name is any printable text: a "/" in it
    must not lead out of the folder."""
    tag = hashlib.sha256(base_dir.encode()).hexdigest()[:8]
    return f"{name.replace(os.sep, '_')}-{tag}"


def _take(args: list[str], names: tuple[str, ...]) -> tuple[list[str], dict[str, ScalarArg]]:
    """Pull ``--name=v``, ``--name v``, ``-x v`` and ``-xv`` for ``names`` out of raw ARGS."""
    flags = {f"--{n}": n for n in names} | {_SHORT[n]: n for n in names if n in _SHORT}
    rest: list[str] = []
    found: dict[str, ScalarArg] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if eq and key in flags:
            found[flags[key]] = value
        elif arg in flags and i + 1 < len(args):
            i += 1
            found[flags[arg]] = args[i]
        elif not arg.startswith("--") and arg[:2] in flags and len(arg) > 2:
            found[flags[arg[:2]]] = arg[2:]
        else:
            rest.append(arg)
        i += 1
    return rest, found
