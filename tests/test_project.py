"""Settings discovery and entry validation: every bad input is one clear line, others still run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backends.base import Project, flags_from_dict
from backends.registry import resolve
from tui.project import entries, settings_from_manage_py

CLI = [sys.executable, "-m", "tui.cli"]
REPO = Path(__file__).resolve().parent.parent


def project(processes: Any, **settings: Any) -> Project:
    values = {"PRODUCTION_PROCESSES": processes, "WSGI_APPLICATION": "mysite.wsgi.application"}
    return Project("mysite.settings", "/tmp", settings=SimpleNamespace(**{**values, **settings}))


def errors(processes: Any) -> dict[str, str | None]:
    return {e.name: e.error for e in entries(project(processes))}


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env={**environ, **(env or {})}, capture_output=True, text=True
    )


def write_settings(folder: Path, module: str, processes: str) -> None:
    (folder / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "test"
            WSGI_APPLICATION = "somewhere.wsgi.application"
            PRODUCTION_PROCESSES = {processes}
            """
        )
    )


GOOD = '{"web": {"BACKEND": "backends.runserver.RunServer", "ARGS": {"addrport": "127.0.0.1:9"}}}'


def test_flags_follow_django_prodserver() -> None:
    assert flags_from_dict({"bind": "0.0.0.0:8000", "workers": 4, "preload": None}) == [
        "--bind=0.0.0.0:8000",
        "--workers=4",
        "--preload",
    ]


@pytest.mark.parametrize(
    "path",
    [
        "django_prodserver.backends.gunicorn.GunicornServer",
        "django_prodserver.backends.servers.gunicorn.GunicornServer",
        "backends.gunicorn.GunicornServer",
    ],
)
def test_gunicorn_spellings(path: str) -> None:
    assert resolve("web", path).kind == "gunicorn"


@pytest.mark.parametrize(
    "path",
    [
        "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "django_prodserver.backends.workers.django_tasks.DjangoTasksWorker",
    ],
)
def test_task_worker_spellings(path: str) -> None:
    assert resolve("worker", path).kind == "tasks"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("not a dict", "web: entry must be a dict with BACKEND and ARGS, got str"),
        ({"ARGS": {}}, "web: BACKEND is missing; add e.g."),
        ({"BACKEND": "nowhere.Server"}, "web: BACKEND 'nowhere.Server' cannot be imported"),
        ({"BACKEND": "os.path"}, "web: BACKEND 'os.path' is not a prodserver-tui backend"),
        (
            {"BACKEND": "django_prodserver.backends.django_q2.DjangoQ2Worker"},
            "web: DjangoQ2Worker is not supported yet by prodserver-tui",
        ),
        (
            {"BACKEND": "django_prodserver.backends.workers.django_q2.DjangoQ2Worker"},
            "web: DjangoQ2Worker is not supported yet",
        ),
        (
            {"BACKEND": "backends.gunicorn.GunicornServer", "ARGS": 42},
            "web: ARGS must be a dict or a list of strings or a string for gunicorn, got int",
        ),
        (
            {"BACKEND": "backends.gunicorn.GunicornServer", "ARGS": {"workers": "many"}},
            "web: ARGS 'workers' must be a positive integer, got 'many'",
        ),
        (
            {"BACKEND": "backends.gunicorn.GunicornServer", "ARGS": {"workers": 0}},
            "web: ARGS 'workers' must be a positive integer, got 0",
        ),
        (
            {"BACKEND": "backends.gunicorn.GunicornServer", "ARGS": {"bind": ["a", "b"]}},
            "web: ARGS 'bind' must be a string, a number or None, got list",
        ),
        (
            {"BACKEND": "backends.command.Command", "ARGS": {"x": "y"}},
            "web: ARGS must be a list of strings or a string for command, got dict",
        ),
        (
            {"BACKEND": "backends.command.Command", "ARGS": ["no-such-program-here"]},
            "web: program 'no-such-program-here' not found",
        ),
        ({"BACKEND": "backends.command.Command", "ARGS": []}, "web: ARGS is empty"),
        (
            {"BACKEND": "backends.command.Command", "ARGS": ["true"], "URL": "ftp://x"},
            "web: URL must be an http:// address, got 'ftp://x'",
        ),
        *(
            (
                {"BACKEND": "backends.command.Command", "ARGS": ["true"], "HEALTH": health},
                f"web: HEALTH must be a URL path starting with /, in ASCII without spaces "
                f"(percent-encode the rest), or False for no HTTP probe, got {health!r}",
            )
            for health in ["healthz", "/a b", "/\r\nX-Evil: 1", "/café", 1, True, "", ["/"]]
        ),
        (
            {"BACKEND": "backends.command.Command", "ARGS": ["true"], "GRACE": "soon"},
            "web: GRACE must be a number of seconds above 0, got 'soon'",
        ),
        ({"BACKEND": "backends.command.Command", "ARGS": "a 'b"}, "web: ARGS cannot be split"),
    ],
)
def test_bad_entry_is_one_line_and_others_survive(spec: Any, expected: str) -> None:
    found = errors({"web": spec, "ok": {"BACKEND": "backends.command.Command", "ARGS": ["true"]}})
    assert found["ok"] is None
    message = found["web"]
    assert message is not None and message.startswith(expected), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("given", "health"),
    [
        ({}, "/"),
        ({"HEALTH": "/healthz?full=1"}, "/healthz?full=1"),
        ({"HEALTH": False}, None),
        ({"HEALTH": None}, None),
    ],
)
def test_health_is_a_path_or_off(given: dict[str, Any], health: str | None) -> None:
    spec = {"BACKEND": "backends.command.Command", "ARGS": ["true"], **given}
    (web,) = entries(project({"web": spec}))
    assert web.backend is not None and web.backend.health == health


def test_task_worker_threads_must_be_positive() -> None:
    spec = {"BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker"}
    found = errors({"worker": {**spec, "ARGS": {"threads": "many"}}})
    assert found["worker"] == (
        "worker: ARGS 'threads' must be a positive integer, got 'many'; write e.g. \"threads\": 2"
    )


def test_task_worker_runs_our_worker_with_the_seed_args() -> None:
    spec = {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"processes": "4", "threads": "1", "queue": "emails", "verbosity": "2"},
    }
    (entry,) = entries(project({"worker": spec}))
    launch = entry.launch()
    assert launch.argv[1:] == (
        "-m",
        "backends.taskworker",
        "--processes=4",
        "--threads=1",
        "--queue=emails",
        "--verbosity=2",
    )
    assert launch.notes == ()


def test_task_worker_drops_db_worker_only_options_with_a_note() -> None:
    spec = {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"no_reload": None, "interval": "0.5"},
    }
    (entry,) = entries(project({"worker": spec}))
    launch = entry.launch()
    assert "--interval=0.5" in launch.argv and not any("reload" in a for a in launch.argv)
    assert launch.notes == ("ARGS 'no_reload' ignored: not needed",)


def test_gunicorn_finds_the_wsgi_application() -> None:
    spec = {"BACKEND": "django_prodserver.backends.gunicorn.GunicornServer", "ARGS": {"bind": "x"}}
    (entry,) = entries(project({"web": spec}))
    assert entry.launch().argv[1:] == (
        "-m",
        "gunicorn",
        "--bind=x",
        "--workers=1",
        "--threads=1",
        "mysite.wsgi:application",
    )


def test_gunicorn_without_wsgi_application() -> None:
    spec = {"BACKEND": "backends.gunicorn.GunicornServer"}
    (entry,) = entries(project({"web": spec}, WSGI_APPLICATION=None))
    assert entry.error and "WSGI_APPLICATION is not set" in entry.error


def test_manage_py_is_read_not_run(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        'import os\nraise SystemExit("executed!")\n'
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
    )
    assert settings_from_manage_py(tmp_path / "manage.py") == "mysite.settings"


def test_discovery_from_manage_py(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "found_settings")\n'
    )
    write_settings(tmp_path, "found_settings", GOOD)
    result = run_cli("--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "django runserver 127.0.0.1:9" in result.stdout


def test_discovery_env_and_flag_and_pythonpath(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    write_settings(src, "env_settings", GOOD)
    write_settings(src, "flag_settings", GOOD.replace("127.0.0.1:9", "127.0.0.1:10"))
    env = {"DJANGO_SETTINGS_MODULE": "env_settings"}
    by_env = run_cli("--check", "--pythonpath", "src", cwd=tmp_path, env=env)
    assert "127.0.0.1:9" in by_env.stdout, by_env.stderr
    by_flag = run_cli("--check", "--pythonpath", "src", "--settings", "flag_settings", cwd=tmp_path)
    assert "127.0.0.1:10" in by_flag.stdout, by_flag.stderr


def test_nothing_found_names_the_three_ways(tmp_path: Path) -> None:
    result = run_cli("--check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "prodserver-tui: error: no Django settings found: pass --settings MODULE, "
        "set DJANGO_SETTINGS_MODULE, or run from the folder that holds manage.py"
    )


@pytest.mark.parametrize(
    ("processes", "expected"),
    [
        (None, "has no PRODUCTION_PROCESSES; add one, e.g."),
        ("{}", "PRODUCTION_PROCESSES is empty; add an entry"),
        ("[1, 2]", "PRODUCTION_PROCESSES must be a dict of name -> entry, got list"),
    ],
)
def test_missing_or_empty_setting_exits_2(
    tmp_path: Path, processes: str | None, expected: str
) -> None:
    if processes is None:
        (tmp_path / "s.py").write_text('SECRET_KEY = "x"\n')
    else:
        write_settings(tmp_path, "s", processes)
    result = run_cli("--check", "--settings", "s", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr and result.stderr.count("\n") == 1


def test_settings_that_raise_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text('raise KeyError("SECRET")\n')
    result = run_cli("--check", "--settings", "s", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr == "prodserver-tui: error: settings 's' failed to load: KeyError: 'SECRET'\n"
    )


def test_unknown_name_lists_the_entries(tmp_path: Path) -> None:
    write_settings(tmp_path, "s", GOOD)
    result = run_cli("--check", "--settings", "s", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "no entry named 'nope' in PRODUCTION_PROCESSES; choose from: web" in result.stderr


def test_check_exits_1_on_a_broken_entry_and_prints_the_rest(tmp_path: Path) -> None:
    write_settings(
        tmp_path,
        "s",
        '{"web": {"BACKEND": "backends.runserver.RunServer"}, "bad": {"BACKEND": "x.Y"}}',
    )
    result = run_cli("--check", "--settings", "s", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("web  runserver ") and lines[0].endswith("-m django runserver")
    assert lines[1].startswith("bad  error     bad: BACKEND 'x.Y' cannot be imported")


def test_backends_never_import_the_ui() -> None:
    code = (
        "import sys, backends.base, backends.registry, backends.gunicorn, backends.runserver, "
        "backends.command, backends.django_tasks, backends.diagnostics, backends.django_setup\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui'))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
