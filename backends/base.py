"""The contract every kind of process shares.

A backend turns one ``PRODUCTION_PROCESSES`` entry into a launch plan (argv, environment,
stop rule) and validates the entry up front, so that a broken entry fails alone with one
line that says what to fix, instead of crashing the console or the other entries.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from backends import private
from backends.control import ENV as CONTROL_ENV

if TYPE_CHECKING:
    from backends.diagnostics.finding import Finding

# gunicorn (``"GET / HTTP/1.1" 200 2``), uvicorn (``"GET / HTTP/1.1" 200 OK``) and runserver
# all put the status right after the quoted request line; group 1 is its class digit.
ACCESS_LOG = r'"[A-Z]+ \S+ HTTP/\d(?:\.\d)?" ([1-5])\d\d\b'


class ConfigError(Exception):
    """A problem with an entry, worded as one line: what is wrong, then how to fix it."""


def one_line(text: str, limit: int = 300) -> str:
    """Text from settings as a message may hold it: one line of printable characters, short.

    A value can hold newlines, escape sequences (a terminal would act on them when --check
    prints the message) or megabytes; each non-printable character is shown escaped.
    """
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def flat(text: object, limit: int = 200) -> str:
    """An exception or a setting as part of one message line: whitespace runs become one
    space (a traceback's newlines too), and it is cut to ``limit``."""
    joined = " ".join(str(text).split())
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    """``1 thread``, ``2 threads``, ``3 processes``: a count and its noun, plural unless the
    count is one (for the nouns of our messages: an English plural is no rule to generalise)."""
    return f"{count} {noun if count == 1 else noun + ('es' if noun.endswith('s') else 's')}"


def shown(value: object, limit: int = 80) -> str:
    """A settings value quoted in an error: its repr, short and on one line. Any value:
    an int past 4300 digits has no repr, and a user's object may fail to give one."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return one_line(text, limit)


@dataclass(frozen=True)
class Project:
    """Where the Django project lives, so children start in the same world as the console."""

    settings_module: str
    base_dir: str
    pythonpath: tuple[str, ...] = ()
    settings: Any = None
    python: str = sys.executable
    # What loading its .env files said: --check's lines, and bad lines as setup findings.
    env_files: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    def child_env(self) -> dict[str, str]:
        path = [*self.pythonpath, os.environ.get("PYTHONPATH", "")]
        return {
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
            # Children write to a pipe: without this Python holds lines back for seconds.
            "PYTHONUNBUFFERED": "1",
        }


@dataclass(frozen=True)
class Launch:
    """Everything the supervisor needs to start and stop one child."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    stop_signal: signal.Signals = signal.SIGTERM
    grace: float = 10.0
    notes: tuple[str, ...] = field(default=())
    stop_group: bool = True  # the stop signal to the whole process group, or the main pid
    scale: Mapping[str, int] = field(default_factory=dict)  # the knobs it starts with
    umask: int | None = None  # the child's, when the files it writes must be private


ScalarArg = str | int | float | None


def flags_from_dict(args: Mapping[str, ScalarArg]) -> list[str]:
    """``{"bind": "x", "preload": None}`` -> ``["--bind=x", "--preload"]``, as django-prodserver."""
    return [f"--{key}" if value is None else f"--{key}={value}" for key, value in args.items()]


def positive_int(entry: str, knob: str, value: object) -> int:
    """Scaling knobs must be whole numbers above zero; say so naming the entry and knob."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        number = None
    else:
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is None or number < 1:
        raise ConfigError(
            f"{entry}: ARGS {knob!r} must be a positive integer, got {shown(value)}; "
            f'write e.g. "{knob}": 2'
        )
    return number


@dataclass(frozen=True)
class Knob:
    """A scaling knob: its ARGS option, its default, and how it changes while running.

    Either signals that move it by one, sent to the main process only (gunicorn's TTIN / TTOU
    convention), or a command the backend builds (``scale_argv``, e.g. Celery's remote
    control), or an absolute target over the control channel (``backends.control``; the
    process answers with its counts). A knob with none changes by a graceful restart with the
    new value. The console compares what it asked for with what it observes and corrects
    one step at a time (``tui.engine.scaling``): observed by counting child processes
    (``children``), from the channel's answers, else taken from the command's success.
    """

    name: str
    default: int = 1
    up: signal.Signals | None = None
    down: signal.Signals | None = None
    by_command: bool = False
    by_channel: bool = False
    children: bool = False  # each unit is a child process of the main one: count them

    @property
    def live(self) -> bool:
        return (self.up is not None and self.down is not None) or self.by_command or self.by_channel


class Backend:
    """Base of every backend: holds the entry, validates ARGS, builds the launch.

    ARGS may be a dict (``options``, turned into ``--key=value``) or, as in django-prodserver,
    a list or a string of raw arguments (``extra``). Subclasses name their ``kind``, the options
    that are scaling ``knobs`` (validated as positive integers), the ARGS shapes they accept,
    and implement ``argv``.
    """

    kind: ClassVar[str] = "process"
    knobs: ClassVar[tuple[Knob, ...]] = ()
    main_knob: ClassVar[str | None] = None  # what + / - scale in the console
    accepts: ClassVar[tuple[type, ...]] = (dict, list, str)
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # Most servers want the stop signal everywhere; a master that stops its own pool (Celery)
    # gets it alone. SIGKILL after the grace period always reaches the whole tree.
    stop_group: ClassVar[bool] = True
    # A log line that proves the process is ready (Celery's "ready."), for those not on HTTP.
    ready_pattern: ClassVar[str | None] = None
    # The entry keys this backend reads; any other is a typo the diagnostics point out.
    keys: ClassVar[frozenset[str]] = frozenset({"BACKEND", "ARGS", "GRACE", "URL", "HEALTH", "ENV"})
    # Django code runs in it (requests, tasks), so every thread of every process may hold a
    # database connection at once (`db_connections`); a program beside Django does not count.
    runs_django: ClassVar[bool] = True
    grace: float = 10.0  # default for the kind; an entry's GRACE overrides it
    umask: ClassVar[int | None] = None  # set for a child that writes into our private folders

    def __init__(self, name: str, entry: Mapping[str, Any], project: Project) -> None:
        self.name = name
        self.entry = entry
        self.project = project
        args = entry.get("ARGS", self.accepts[0]())
        self.options: dict[str, ScalarArg] = self._checked_options(args)
        self.extra: list[str] = self._checked_extra(args)
        # What each knob is now: set from ARGS, changed by scaling, kept across restarts.
        self.scale = {
            k.name: positive_int(name, k.name, self.options.get(k.name, k.default))
            for k in self.knobs
        }
        self.configured = dict(self.scale)
        self.grace = self._checked_grace(entry.get("GRACE", self.grace))
        self.declared_url = self._checked_url(entry.get("URL"))
        self.health = self._checked_health(entry.get("HEALTH", "/"))
        self.env = self._checked_env(entry.get("ENV", {}))
        self._control_dir: tempfile.TemporaryDirectory[str] | None = None

    def _checked_options(self, args: object) -> dict[str, ScalarArg]:
        if not isinstance(args, self.accepts):
            shapes = " or ".join(_SHAPE_NAMES[t] for t in self.accepts)
            raise ConfigError(
                f"{self.name}: ARGS must be {shapes} for {self.kind}, got {type(args).__name__}; "
                f"write e.g. {_SHAPE_HINTS[self.accepts[0]]}"
            )
        if not isinstance(args, dict):
            return {}
        for key, value in args.items():
            self._check_option_name(key)
            if isinstance(value, bool) or not isinstance(value, str | int | float | None):
                raise ConfigError(
                    f"{self.name}: ARGS {shown(key)} must be a string, a number or None, "
                    f"got {type(value).__name__}; write it as a string"
                )
            # No option needs more than 64 bits, and str() fails past 4300 digits.
            if isinstance(value, int) and value.bit_length() > 64:
                raise ConfigError(f"{self.name}: ARGS {shown(key)} is too large a number")
        return dict(args)

    def _check_option_name(self, key: object) -> None:
        """A key becomes the option name in ``--key=value``, one argument whatever its value
        holds. So the key alone is checked: an ``=`` would move part of it into the value, and
        whitespace, control characters or a leading dash make a name no program knows."""
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{self.name}: ARGS key {shown(key)} must be a non-empty string")
        if key.startswith("-") or "=" in key or not key.isprintable() or " " in key:
            raise ConfigError(
                f"{self.name}: ARGS key {shown(key)} is not an option name; write the name "
                'without dashes, "=", spaces or control characters, e.g. "bind"'
            )

    def _checked_grace(self, grace: object) -> float:
        """``GRACE``: seconds between the stop signal and SIGKILL, per entry. Bounded, because
        an infinite (or astronomical) grace would let one child hang the console's shutdown."""
        seconds = math.nan
        if not isinstance(grace, bool) and isinstance(grace, int | float):
            seconds = float(grace) if abs(grace) < MAX_GRACE * 2 else math.inf
        if not 0 < seconds <= MAX_GRACE:
            raise ConfigError(
                f"{self.name}: GRACE must be a number of seconds above 0, got {shown(grace)}; "
                f'write e.g. "GRACE": 30 (at most a day, {MAX_GRACE:.0f})'
            )
        return seconds

    def _checked_url(self, url: object) -> str | None:
        """``URL``: where any entry answers HTTP (``npm run dev`` on 5173), for readiness."""
        if url is None:
            return None
        if not (isinstance(url, str) and url.startswith("http://") and _is_address(url)):
            raise ConfigError(
                f"{self.name}: URL must be an http:// address, got {shown(url)}; "
                'write e.g. "URL": "http://127.0.0.1:5173"'
            )
        return url

    def _checked_health(self, path: object) -> str | None:
        """``HEALTH``: the path the readiness probe asks for (``GET``), "/" unless set; False
        or None turns the probe off (then the entry is running once it stays up a second).
        It goes into a request line as it is: printable ASCII without spaces."""
        if path is None or path is False:
            return None
        if not (
            isinstance(path, str)
            and path.startswith("/")
            and path.isascii()
            and path.isprintable()
            and " " not in path
            and len(path) <= 2000
        ):
            raise ConfigError(
                f"{self.name}: HEALTH must be a URL path starting with /, in ASCII without "
                f"spaces (percent-encode the rest), or False for no HTTP probe, got {shown(path)}; "
                'write e.g. "HEALTH": "/healthz"'
            )
        return path

    def _checked_env(self, env: object) -> dict[str, str]:
        """``ENV``: variables for this entry alone, over the environment and the .env files
        (it is the most specific configuration). The variables the console sets for every
        child are refused: they would move the child to other settings than the console's."""
        example = 'write e.g. "ENV": {"WEB_CONCURRENCY": "4"}'
        if not isinstance(env, dict):
            raise ConfigError(
                f"{self.name}: ENV must be a dict of name -> string, got "
                f"{type(env).__name__}; {example}"
            )
        reserved = {*self.project.child_env(), CONTROL_ENV}
        for key, value in env.items():
            if not (isinstance(key, str) and key and "=" not in key and "\0" not in key):
                raise ConfigError(
                    f"{self.name}: ENV key {shown(key)} is not a variable name; {example}"
                )
            if key in reserved:
                raise ConfigError(
                    f"{self.name}: ENV cannot set {key}, which the console sets for every "
                    "child; use --settings or --pythonpath instead"
                )
            if not isinstance(value, str) or "\0" in value:
                raise ConfigError(
                    f"{self.name}: ENV {key} must be a string without NUL, got {shown(value)}; "
                    "write numbers in quotes too"
                )
        return dict(env)

    def _checked_extra(self, args: object) -> list[str]:
        if isinstance(args, str):
            try:
                args = shlex.split(args)
            except ValueError as e:
                raise ConfigError(f"{self.name}: ARGS cannot be split ({e}); fix its quotes") from e
            # A string is a command line: split like a shell splits words (a newline separates
            # words too; quotes keep one together) but never run by one, so ";", "$(...)" and
            # backticks are plain characters of the argument they are in.
        if not isinstance(args, list):
            return []
        if not all(isinstance(a, str) for a in args):
            raise ConfigError(
                f"{self.name}: ARGS must be a list of strings; write e.g. {_SHAPE_HINTS[list]}"
            )
        return list(args)

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        known = ", ".join(k.name for k in self.knobs) or "none"
        raise ConfigError(f"{self.name}: {self.kind} has no knob {name!r}; its knobs: {known}")

    def argv(self) -> list[str]:
        raise NotImplementedError

    def scale_argv(self, knob: str, before: int, wanted: int, pid: int) -> list[str]:
        """For ``by_command`` knobs: the command that changes the running process's knob."""
        raise NotImplementedError

    def counts_children(self, knob: Knob) -> bool:
        """Whether the main process's children show this knob's value now (a backend whose
        units are processes only in some modes says which)."""
        return knob.children

    def prepare(self) -> None:
        """Make what a start needs on disk, before each start and never for ``--check``:
        ``launch()`` only computes and checks, so it writes nothing."""
        if any(k.by_channel for k in self.knobs) and self._control_dir is None:
            made = tempfile.TemporaryDirectory(prefix="prodserver-tui-")  # 0700, a new name
            try:
                private.folder(made.name, make=False)  # and nobody can move it: TMPDIR is safe
            except private.UnsafePath as e:
                made.cleanup()
                raise ConfigError(f"{self.name}: no private control folder: {e}") from e
            self._control_dir = made

    def control_path(self) -> str | None:
        """Where the process listens for ``by_channel`` targets: a socket in a private folder
        of this console's, made by ``prepare()`` (None before) and removed when the console
        exits."""
        if self._control_dir is None:
            return None
        return os.path.join(self._control_dir.name, "control")

    def db_connections(self) -> int:
        """Database connections it may hold at once to query and write, as its knobs are
        now: the product of its knobs (processes x threads, workers x threads, concurrency), 0
        if not Django."""
        return math.prod(self.scale.values()) if self.runs_django else 0

    def db_listeners(self) -> int:
        """Connections it holds on PostgreSQL only to hear it (a task worker's LISTEN): they
        take server slots, but write nothing."""
        return 0

    def url(self) -> str | None:
        """Where a web server answers, from its own ARGS; None for everything else."""
        return None

    def events_pattern(self) -> str | None:
        """A regex over the process's log lines whose first group names an event to count:
        web servers' access logs by status class; None when there is nothing to count."""
        return ACCESS_LOG if self.web_url() else None

    def web_url(self) -> str | None:
        """The address shown and probed for readiness (at ``health``): the entry's URL, else
        the server's."""
        return self.declared_url or self.url()

    def probe_host(self) -> str | None:
        """The Host the readiness probe names: one the site accepts. Django answers any other
        with 400 and logs DisallowedHost at ERROR, which default LOGGING mails to ADMINS: every
        10 s. None: the probed address will do (no settings, DEBUG's defaults, or ``*``)."""
        allowed = getattr(self.project.settings, "ALLOWED_HOSTS", None) or []
        for host in allowed:
            if not isinstance(host, str) or host == "*":
                return None
            if "*" not in host:
                return host.lstrip(".")  # ".example.com" allows example.com itself
        return None

    def notes(self) -> list[str]:
        """Lines the pane shows at each start: what the backend did with the entry."""
        return []

    def launch(self) -> Launch:
        control = self.control_path()
        return Launch(
            argv=tuple(self._checked_argv(self.argv())),
            env={
                **self.env,
                **self.project.child_env(),
                **({CONTROL_ENV: control} if control else {}),
            },
            cwd=self.project.base_dir,
            stop_signal=self.stop_signal,
            stop_group=self.stop_group,
            grace=self.grace,
            notes=tuple(self.notes()),
            scale=dict(self.scale),
            umask=self.umask,
        )

    def _checked_argv(self, argv: list[str]) -> list[str]:
        """Each element reaches the program as exactly one argument (no shell, ever), so
        spaces, quotes, ";", "$(...)", newlines and leading dashes need no check here. A NUL
        is the exception: the OS cannot pass one, so exec would fail at every start; it is
        refused now, as the config error it is."""
        for arg in argv:
            if not isinstance(arg, str):
                raise ConfigError(
                    f"{self.name}: the command line holds {shown(arg)}, not a string; "
                    "write every argument as a string"
                )
            if "\0" in arg:
                raise ConfigError(
                    f"{self.name}: argument {shown(arg)} holds a NUL character, which no "
                    "program can receive; remove it"
                )
        return argv

    def django_command(self, command: str, *args: str) -> list[str]:
        """Run a manage.py command without needing manage.py: settings come from the env."""
        return [self.project.python, "-m", "django", command, *args]


MAX_GRACE = 24 * 3600.0  # a day: longer than any drain, short of "never"


def _is_address(url: str) -> bool:
    """Printable, no spaces, and a port that parses: the readiness probe connects to it."""
    if not url.isprintable() or " " in url:
        return False
    try:
        urlsplit(url).port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        return False
    return True


_SHAPE_NAMES: dict[type, str] = {dict: "a dict", list: "a list of strings", str: "a string"}
_SHAPE_HINTS: dict[type, str] = {
    dict: '"ARGS": {"bind": "127.0.0.1:8000"}',
    list: '"ARGS": ["npm", "run", "watch"]',
    str: '"ARGS": "--bind 127.0.0.1:8000"',
}


def require_module(entry: str, module: str, extra: str) -> None:
    """A server that is not installed is a config error with the install command, not a crash.
    The command names the extra's own requirements: "prodserver-tui" is not on PyPI, so
    ``pip install "prodserver-tui[extra]"`` would find nothing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        wanted = " ".join(f'"{r}"' for r in _extra_requirements(extra)) or module
        raise ConfigError(f"{entry}: {module} is not installed; run: pip install {wanted}")


def _extra_requirements(extra: str) -> list[str]:
    """``gunicorn>=22`` for the extra "gunicorn", from the installed package's metadata
    (``Requires-Dist: gunicorn>=22; extra == 'gunicorn'``); none in a checkout that is not
    installed."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("prodserver-tui") or []
    except PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    wanted = []
    for line in declared:
        requirement, _, condition = line.partition(";")
        if marker.fullmatch(condition.strip()):
            wanted.append(requirement.strip())
    return wanted
