"""Hostile settings: whatever PRODUCTION_PROCESSES holds, each entry is runnable or one clear
line, nothing ever goes through a shell, and an ARGS value reaches the child as what it says.

The settings file is code the user wrote, so these are mistakes rather than attacks; but a
value copied from an environment variable or a secret store can hold anything, and the console
must neither crash on it nor let it turn into extra arguments or commands.
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import FIXTURES
from helpers import DJPROJECT, until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backends.base import MAX_GRACE, Backend, Project, flags_from_dict
from backends.registry import _IMPLEMENTED
from tui.engine.probe import probe_address
from tui.engine.supervisor import Supervisor
from tui.project import Entry, ProjectError, build_entry, entries
from tui.redact import Redactor

REPO = Path(__file__).resolve().parent.parent
ARGV_JSON = str(FIXTURES / "argv_json.py")
# capsys is read after every example, so sharing it across examples is intended.
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class BrokenRepr:
    """A user's object whose repr and str fail: error messages must still be made."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How hypothesis names it in a report (it would call repr otherwise)."""
        printer.text("BrokenRepr()")


class MultiLineRepr:
    def __repr__(self) -> str:
        return "line one\nline two \x1b]0;title\x07"


# --- what settings can hold -----------------------------------------------------------------

NASTY_TEXT = [
    "a b",
    "'q",
    '"',
    "; touch /tmp/prodserver-tui-pwned",
    "$(touch /tmp/prodserver-tui-pwned)",
    "`id`",
    "a\nb",
    "a\rb",
    "\x00",
    "x\x00y",
    "--reload",
    "--help",
    "-h",
    "-",
    "=",
    "k=v",
    "\x1b]0;title\x07",
    "\x1b[2J",
    "\u2028",
    "\u202e",
    "",
    " ",
    "http://127.0.0.1:99999",
    "http://x:port",
    "http://[::1",
]
HUGE = st.integers(4400, 4500).map(lambda digits: 10**digits)  # past str()'s 4300 digits
text = st.one_of(st.text(max_size=12), st.sampled_from(NASTY_TEXT))
hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.binary(max_size=6),
    st.builds(BrokenRepr),
)
scalars = st.one_of(
    hashable,
    st.just("x" * 100_000),
    st.builds(object),
    st.builds(MultiLineRepr),
    st.sampled_from([len, lambda: None, object, Exception, print]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashable, inner, max_size=4),
        st.frozensets(hashable, max_size=3),
        st.sets(hashable, max_size=3),
    ),
    max_leaves=10,
)

BACKENDS = [
    *(f"django_prodserver.backends.{short}" for short in _IMPLEMENTED),
    *(
        f"django_prodserver.backends.{'workers' if 'Worker' in s or 'Beat' in s else 'servers'}.{s}"
        for s in _IMPLEMENTED
    ),
    "backends.command.Command",
    "backends.runserver.RunServer",
    "backends.base.Backend",
    "django_prodserver.backends.django_q2.DjangoQ2Worker",
    "nowhere.Server",
    "os.path",
    "..X",
    ".X",
    "a..b.C",
    "a\x00b.C",
    "x" * 10_000,
]
KNOWN_OPTIONS = [
    "workers",
    "threads",
    "processes",
    "concurrency",
    "bind",
    "host",
    "port",
    "queue",
    "hostname",
    "pool",
    "autoscale",
    "loglevel",
    "detach",
    "uds",
    "listen",
    "address",
    "websockets",
    "reload",
    "drain-timeout",
    "addrport",
    "help",
    "h",
    "version",
]
option_values = st.one_of(st.none(), st.integers(), HUGE, st.floats(), text, st.just("1"), values)
args = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(KNOWN_OPTIONS), hashable), option_values, max_size=5),
    st.lists(text, max_size=5),
    st.lists(st.one_of(text, values), max_size=3),
    text,
    values,
)
spec = st.builds(
    lambda fixed, extra: {**extra, **fixed},
    st.fixed_dictionaries(
        {},
        optional={
            "BACKEND": st.one_of(st.sampled_from(BACKENDS), values),
            "ARGS": args,
            "APP": st.one_of(st.just("djproject.celery.app"), text, values),
            "GRACE": st.one_of(st.floats(), st.integers(), HUGE, values),
            "URL": st.one_of(text.map(lambda t: "http://" + t), values),
        },
    ),
    st.dictionaries(hashable, values, max_size=2),
)
project_settings = st.fixed_dictionaries(
    {},
    optional={
        "WSGI_APPLICATION": st.one_of(st.just("djproject.wsgi.application"), values),
        "ASGI_APPLICATION": st.one_of(st.just("djproject.asgi.application"), values),
        "CELERY_WORKER_CONCURRENCY": values,
    },
)


def make_project(attrs: dict[str, Any]) -> Project:
    return Project(
        "djproject.settings",
        str(DJPROJECT),
        pythonpath=(str(DJPROJECT),),
        settings=SimpleNamespace(**attrs),
    )


def assert_one_clear_line(entry: Entry) -> None:
    error = entry.error
    assert error is not None and entry.backend is None
    assert error.isprintable(), repr(error)  # one line, and no escape a terminal acts on
    assert len(error) <= 300
    assert "Traceback" not in error
    assert ": " in error  # "<which entry>: <what is wrong>; <how to fix it>"
    assert entry.name.isprintable() and len(entry.name) <= 100, repr(entry.name)


def assert_runnable(entry: Entry) -> None:
    """Everything the console asks a backend for, from --check to a pane's title."""
    backend = entry.backend
    assert backend is not None and entry.error is None
    launch = entry.launch()
    assert isinstance(launch.argv, tuple) and launch.argv
    for arg in launch.argv:
        assert type(arg) is str and "\x00" not in arg, repr(arg)
    assert all(type(k) is str and type(v) is str for k, v in launch.env.items())
    assert 0 < launch.grace <= MAX_GRACE and math.isfinite(launch.grace)
    pattern = backend.events_pattern()
    if pattern is not None:
        re.compile(pattern)
    url = backend.web_url()
    if url is not None:
        probe_address(url)
    assert all(isinstance(note, str) for note in backend.notes())
    for knob in backend.knobs:
        assert type(backend.scale[knob.name]) is int and backend.scale[knob.name] >= 1
    assert entry.name.isprintable() and len(entry.name) <= 64


def check(entry: Entry) -> None:
    if entry.error is None:
        assert_runnable(entry)
    else:
        assert_one_clear_line(entry)


# --- any value, any entry ----------------------------------------------------------------------


@FAST
@given(
    name=st.one_of(st.just("web"), hashable), spec=st.one_of(spec, values), attrs=project_settings
)
@example(name="web", spec={"BACKEND": BACKENDS[0], "ARGS": {"bind": "127.0.0.1:99999"}}, attrs={})
@example(name="web", spec={"BACKEND": BACKENDS[0], "ARGS": {"workers": 10**5000}}, attrs={})
@example(name="web", spec={"BACKEND": BACKENDS[0], "GRACE": math.inf}, attrs={})
@example(name="web", spec={"BACKEND": BACKENDS[0], "GRACE": BrokenRepr()}, attrs={})
@example(name="web", spec={"BACKEND": "backends.command.Command", "URL": "http://x:p"}, attrs={})
@example(name="web", spec={"BACKEND": "..X"}, attrs={})
@example(name="web", spec={"BACKEND": "backends.base.Backend"}, attrs={})
@example(name="web", spec={"BACKEND": "backends.command.Command", "ARGS": ["x\x00"]}, attrs={})
@example(name="web\x1b]0;t\x07", spec={}, attrs={})
@example(name=10**5000, spec={}, attrs={})
@example(name="web", spec={"BACKEND": BACKENDS[0], "ARGS": {"b=ind": "x"}}, attrs={})
@example(
    name="web",
    spec={"BACKEND": "django_prodserver.backends.celery.CeleryWorker", "APP": "a\x00"},
    attrs={},
)
@example(
    name="worker",
    spec={"BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker", "ARGS": ["-h"]},
    attrs={},
)
@example(
    name="worker",
    spec={
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"drain-timeout": "1e300"},
    },
    attrs={},
)
def test_any_entry_is_runnable_or_one_clear_line(
    name: object, spec: object, attrs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    check(build_entry(name, spec, make_project(attrs)))
    assert capsys.readouterr() == ("", "")  # nothing printed over the console's screen


@FAST
@given(
    processes=st.one_of(
        st.dictionaries(st.one_of(st.sampled_from(["web", "1", "'web'"]), hashable), spec),
        values,
    ),
    attrs=project_settings,
)
@example(
    processes={1: {}, "1": {"BACKEND": "backends.command.Command", "ARGS": ["true"]}}, attrs={}
)
@example(processes={"web": {"BACKEND": "backends.command.Command", "ARGS": []}}, attrs={})
def test_any_setting_gives_one_entry_per_key_or_one_project_error(
    processes: object, attrs: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project({**attrs, "PRODUCTION_PROCESSES": processes})
    redact = Redactor.for_project(project.settings)  # the CLI builds it from the same settings
    try:
        found = entries(project)
    except ProjectError as e:
        assert str(e).isprintable() and "Traceback" not in str(e)
        return
    assert isinstance(processes, dict)
    assert len(found) == len(processes)
    assert len({entry.name for entry in found}) == len(found)  # none hides another
    for entry in found:
        check(entry)
        if entry.error is None:
            redact.argv(entry.launch().argv)
        else:
            assert redact(entry.error).isprintable()
    Supervisor(found, watchdog=False, redact=redact)  # each Child built from its entry, unstarted
    assert capsys.readouterr() == ("", "")


def test_nothing_in_the_code_can_run_a_shell() -> None:
    """The argv is the only way in: no shell=True, no *_shell(), no os.system or os.popen."""
    shells = re.compile(
        r"shell\s*=\s*True|subprocess_shell|create_subprocess_shell|os\.system|os\.popen"
    )
    for path in [*REPO.glob("tui/**/*.py"), *REPO.glob("backends/**/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                call = ast.unparse(node)
                assert not shells.search(call), f"{path}: {call}"


# --- ARGS reach a real child as given ----------------------------------------------------------

INJECTIONS = [
    "two words",
    "'single'",
    '"double"',
    "semi; touch {pwned}",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "line\nbreak; touch {pwned}",
    "tab\there",
    "--leading-dashes",
    "-x",
    "key=value",
    "| touch {pwned}",
    "&& touch {pwned}",
    "> {pwned}",
    "*",
    "~",
    "${{HOME}}",
    "\\",
    "é 😀 \u202e",
    "\x1b]0;pwned\x07\x1b[2J\x9b2J",
]


class Echo(Backend):
    """A real backend over the JSON-argv fixture: dict ARGS as ``--key=value``, as every
    server backend builds them, then any list / string ARGS."""

    kind = "echo"

    def argv(self) -> list[str]:
        return [sys.executable, ARGV_JSON, *flags_from_dict(self.options), *self.extra]


def echo_project(tmp_path: Path) -> Project:
    return Project("unused.settings", str(tmp_path), settings=SimpleNamespace())


async def received(supervise: Any, entry: Entry) -> list[str]:
    assert entry.error is None, entry.error
    sup = await supervise(entry)
    ring = sup[entry.name].ring

    def argv_line() -> str | None:
        return next((ln.text for ln in ring.since(0) if ln.text.startswith("ARGV ")), None)

    await until(argv_line, timeout=30, what="the child's argv")
    for shown_line in ring.since(0):  # the command note quotes ARGS: escaped, one line
        assert shown_line.text.isprintable(), repr(shown_line.text)
    line = argv_line()
    assert line is not None
    decoded: list[str] = json.loads(line.removeprefix("ARGV "))
    return decoded


async def test_list_args_reach_the_child_one_argument_each(tmp_path: Path, supervise: Any) -> None:
    pwned = tmp_path / "pwned"
    given_args = [value.format(pwned=pwned) for value in INJECTIONS]
    entry = build_entry(
        "cmd",
        {"BACKEND": "backends.command.Command", "ARGS": [sys.executable, ARGV_JSON, *given_args]},
        echo_project(tmp_path),
    )
    assert await received(supervise, entry) == given_args
    assert not pwned.exists()


async def test_dict_values_are_one_option_each(tmp_path: Path, supervise: Any) -> None:
    """A value starting with ``--`` stays the value: ``--opt=--reload`` is one argument."""
    pwned = tmp_path / "pwned"
    options = {f"opt{i}": value.format(pwned=pwned) for i, value in enumerate(INJECTIONS)}
    entry = build_entry(
        "echo", {"BACKEND": f"{__name__}.Echo", "ARGS": options}, echo_project(tmp_path)
    )
    expected = [f"--{key}={value}" for key, value in options.items()]
    assert await received(supervise, entry) == expected
    assert not pwned.exists()


async def test_a_string_is_split_like_words_but_never_run(tmp_path: Path, supervise: Any) -> None:
    """A string ARGS is a command line: words split as a shell splits them (quotes keep one
    together), but ";", "$(...)", "|" and backticks stay characters of an argument."""
    pwned = tmp_path / "pwned"
    line = (
        f"--a 'two words' \"$(touch {pwned})\" ; touch {pwned} `touch {pwned}` "
        f"| touch {pwned} 'x\ny' --k=v"
    )
    entry = build_entry(
        "echo", {"BACKEND": f"{__name__}.Echo", "ARGS": line}, echo_project(tmp_path)
    )
    assert await received(supervise, entry) == [
        "--a",
        "two words",
        f"$(touch {pwned})",
        ";",
        "touch",
        str(pwned),
        "`touch",
        f"{pwned}`",
        "|",
        "touch",
        str(pwned),
        "x\ny",
        "--k=v",
    ]
    assert not pwned.exists()


COMMAND = "backends.command.Command"


@pytest.mark.parametrize(
    "spec",
    [
        {"BACKEND": COMMAND, "ARGS": [sys.executable, "-c", "pass", "a\x00b"]},
        {"BACKEND": COMMAND, "ARGS": f"{sys.executable} -c pass 'a\x00b'"},
        {"BACKEND": COMMAND, "ARGS": ["no\x00such-program"]},
        {"BACKEND": f"{__name__}.Echo", "ARGS": {"bind": "127.0.0.1\x00:80"}},
        {"BACKEND": "django_prodserver.backends.celery.CeleryWorker", "APP": "app\x00"},
    ],
)
def test_a_nul_which_no_argv_can_carry_is_refused(tmp_path: Path, spec: dict[str, Any]) -> None:
    """Everything else is one argument as given; a NUL would make every start fail in exec."""
    entry = build_entry("cmd", spec, echo_project(tmp_path))
    assert entry.error is not None and "holds a NUL character" in entry.error, entry.error


@pytest.mark.parametrize("key", ["b=ind", "--bind", "-b", "two words", "new\nline", "nul\x00"])
def test_an_option_name_cannot_carry_a_value_or_a_second_option(tmp_path: Path, key: str) -> None:
    entry = build_entry(
        "echo", {"BACKEND": f"{__name__}.Echo", "ARGS": {key: "x"}}, echo_project(tmp_path)
    )
    assert entry.error is not None and "is not an option name" in entry.error, entry.error


# --- the real CLI on a hostile settings module -------------------------------------------------

HOSTILE_SETTINGS = """
    import math

    class BrokenRepr:
        def __repr__(self):
            raise RuntimeError("no repr")

        __str__ = __repr__

    CMD = "backends.command.Command"
    GUNICORN = "django_prodserver.backends.gunicorn.GunicornServer"
    SECRET_KEY = "test"
    WSGI_APPLICATION = "somewhere.wsgi.application"
    PRODUCTION_PROCESSES = {
        "good": {"BACKEND": CMD, "ARGS": ["true"]},
        "empty": {"BACKEND": CMD, "ARGS": []},
        "nul": {"BACKEND": CMD, "ARGS": ["true", "a\\x00b"]},
        "huge": {"BACKEND": GUNICORN, "ARGS": {"workers": 10**5000}},
        "forever": {"BACKEND": CMD, "ARGS": ["true"], "GRACE": math.inf},
        "nan": {"BACKEND": CMD, "ARGS": ["true"], "GRACE": math.nan},
        "repr": {"BACKEND": CMD, "ARGS": ["true"], "GRACE": BrokenRepr()},
        "port": {"BACKEND": CMD, "ARGS": ["true"], "URL": "http://127.0.0.1:99999"},
        "relative": {"BACKEND": "..Nope"},
        "base": {"BACKEND": "backends.base.Backend"},
        "callable": {"BACKEND": print},
        "set": {"BACKEND": CMD, "ARGS": {"a", "b"}},
        "key": {"BACKEND": GUNICORN, "ARGS": {"bind=0.0.0.0:80": None}},
        "long": {"BACKEND": CMD, "ARGS": ["x" * 1_000_000]},
        "title\\x1b]0;pwned\\x07": {"BACKEND": CMD, "ARGS": ["true"]},
        "new\\nline": {"BACKEND": CMD, "ARGS": ["true"]},
        1: {"BACKEND": CMD, "ARGS": ["true"]},
        "1": {"BACKEND": CMD, "ARGS": ["true"]},
        None: None,
        (1, 2): [],
        "n" * 100: {"BACKEND": CMD, "ARGS": ["true"]},
    }
"""
GOOD_IN_HOSTILE = {"good", "1"}


def test_check_prints_one_line_per_bad_entry_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "hostile.py").write_text(textwrap.dedent(HOSTILE_SETTINGS))
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--check", "--settings", "hostile"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out, out
    assert done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 21, out  # one per entry: no notes, no continuation lines
    for line in lines:
        assert line.isprintable(), repr(line)
        assert len(line) < 500, line
    errors = [line for line in lines if "  error  " in line]
    assert len(errors) == 21 - len(GOOD_IN_HOSTILE), out


def test_an_entry_name_cannot_move_the_beat_schedule_out_of_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    beat = {"BACKEND": "backends.celery.CeleryBeat", "APP": "djproject.celery.app"}
    entry = build_entry("../../escaped", beat, make_project({}))
    assert entry.error is None, entry.error
    schedule = next(a for a in entry.launch().argv if a.startswith("--schedule="))
    folder = tmp_path / "prodserver-tui" / "celerybeat"
    assert Path(schedule.removeprefix("--schedule=")).parent == folder
