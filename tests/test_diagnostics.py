"""Django-aware diagnostics: each mistake in a small real project becomes one finding, shown
where the user looks (``--check``, headless output, the console), and a healthy project
produces none.

Django settings load once per process, so every project is checked in a process of its own:
the real CLI, or a scenario script in tests/diagprojects run like tests/console_tasks.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from conftest import _postgres, postgres_missing
from helpers import free_port, run_json, tree, wait_gone
from needs import needs
from test_cli import headless

from backends.base import Project
from backends.diagnostics import Finding, check_entry_keys, check_ports, diff
from tui.project import build_entry

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DIAG = TESTS / "diagprojects"
WORKER = "django_prodserver.backends.django_tasks.DjangoTasksWorker"

# The seed page's setup, taken literally: its INSTALLED_APPS line, no TASKS (it never sets
# one), its "Web + Worker" PRODUCTION_PROCESSES, and its tasks.py (django.contrib.tasks, .delay).
SEED = """
DEBUG = True
INSTALLED_APPS = ["django-tasks", "myapp"]
del TASKS
PRODUCTION_PROCESSES = {
    "web": {
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {"bind": "0.0.0.0:8000", "workers": "4"},
    },
    "worker": {
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {"processes": "4", "threads": "1"},
    },
}
"""


TASKS_UNMIGRATED = (
    r"error    project: \d+ migration\(s\) of django_tasks_db are not applied \(its table "
    r"is missing\), so workers and \.enqueue\(\) fail — run: python manage\.py migrate"
)
INDEXES_UNMIGRATED = (
    "warning  project: 2 migration(s) are not applied: prodserver_tui (2) — "
    "run: python manage.py migrate"
)


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return {**clean, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), **extra}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The healthy project, migrated once; each test copies it (database included)."""
    site = tmp_path_factory.mktemp("diag") / "site"
    shutil.copytree(DIAG / "site", site, ignore=shutil.ignore_patterns("__pycache__"))
    manage(site, "migrate", "--noinput")
    return site


def manage(site: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=site, env=env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def site(tmp_path: Path, migrated: Path, mistake: str = "", database: bool = True) -> Path:
    """A copy of the healthy project with ``mistake`` appended to its settings."""
    copy = tmp_path / "site"
    skip = ["__pycache__"] + ([] if database else ["db.sqlite3"])
    shutil.copytree(migrated, copy, ignore=shutil.ignore_patterns(*skip))
    with (copy / "site_settings.py").open("a") as settings:
        settings.write(mistake)
    return copy


def check(folder: Path, **extra: str) -> tuple[int, list[str]]:
    """``prodserver-tui --check`` as a user runs it; its finding lines (not the entry lines)."""
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--check"],
        cwd=folder,
        env=env(**{"DIAG_PORT": str(free_port()), "DJPROJECT_PORT": str(free_port()), **extra}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    findings = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("error ", "warning ", "info "))
    ]
    return done.returncode, findings


# -- setup findings in --check output -------------------------------------------------------


def test_seed_snippet_becomes_findings_not_tracebacks(tmp_path: Path, migrated: Path) -> None:
    folder = site(tmp_path, migrated, SEED)
    shutil.copy(DIAG / "seed_tasks.py", folder / "myapp" / "tasks.py")
    code, lines = check(folder)
    assert code == 1
    assert (
        'error    project: INSTALLED_APPS has "django-tasks", which is not a Python module, '
        'instead of "django_tasks_db" — replace "django-tasks" with "django_tasks_db", then '
        "run: python manage.py migrate"
    ) in lines
    assert (
        "error    worker: TASKS is not set, so .enqueue() runs each task at once inside the "
        "caller (Django's ImmediateBackend) and worker never gets one — set TASKS = "
        '{"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}'
    ) in lines
    assert (
        "warning  web: web listens on every interface (0.0.0.0:8000) with DEBUG = True, so "
        "anyone who reaches it sees tracebacks and settings — bind 127.0.0.1 while DEBUG is "
        "on, or set DEBUG = False"
    ) in lines
    assert (
        "error    project: myapp.tasks imports django.contrib.tasks (line 2), which does not "
        'exist, so every import of its tasks fails — write "from django.tasks import task" '
        '("from django_tasks import task" on Django 5.2)'
    ) in lines
    assert (
        "error    project: myapp.tasks calls send_email.delay() (line 13), which a Django task "
        "does not have (that is Celery's spelling) — call send_email.enqueue(...) instead"
    ) in lines
    # The seed's ARGS are fine here (our worker has processes and threads): no finding on them.
    assert not any("processes" in line or "threads" in line for line in lines)


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        pytest.param(
            'INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.tasks"]\n',
            'error    project: INSTALLED_APPS has "django.contrib.tasks", which does not exist, '
            'so Django cannot start — remove it and add "django_tasks_db"; tasks come from '
            '"from django.tasks import task" (django_tasks on Django 5.2)',
            id="contrib-tasks",
        ),
        pytest.param(
            'INSTALLED_APPS = [a for a in INSTALLED_APPS if a != "django_tasks_db"]\n',
            "error    project: django_tasks_db is not in INSTALLED_APPS, so worker cannot store "
            'or run tasks — add "django_tasks_db" to INSTALLED_APPS (pip install '
            "django-tasks-db), then run: python manage.py migrate",
            id="tasks-app-missing",
        ),
        pytest.param(
            'TASKS = {"default": {"BACKEND": '
            '"django_tasks.backends.immediate.ImmediateBackend"}}\n',
            'error    worker: TASKS["default"] uses django_tasks.backends.immediate.'
            "ImmediateBackend, so tasks never reach the database worker reads — set "
            'TASKS["default"]["BACKEND"] = "django_tasks_db.DatabaseBackend"',
            id="tasks-backend-not-db",
        ),
        pytest.param(
            'PRODUCTION_PROCESSES["worker"]["ARGS"] = {"backend": "bulk"}\n',
            'error    worker: worker reads TASKS["bulk"], which is not set — add TASKS["bulk"] '
            '= {"BACKEND": "django_tasks_db.DatabaseBackend"} or give the worker the right '
            '"backend" in ARGS',
            id="tasks-backend-missing",
        ),
        pytest.param(
            'PRODUCTION_PROCESSES["worker"]["ARGS"] = {"queue": "default,reports"}\n',
            'warning  worker: worker serves queue "reports", which TASKS["default"]["QUEUES"] '
            '(default, emails) does not list, so nothing can be enqueued there — add "reports" '
            'to TASKS["default"]["QUEUES"] or fix the "queue" in ARGS',
            id="queue-not-configured",
        ),
        pytest.param(
            'ALLOWED_HOSTS = ["example.com"]\n',
            "warning  web: ALLOWED_HOSTS ['example.com'] rejects 127.0.0.1, the address web "
            "serves on, so requests to http://127.0.0.1:{port} get 400 Bad Request — add "
            '"127.0.0.1" (or the name clients use) to ALLOWED_HOSTS',
            id="allowed-hosts-rejects",
        ),
        pytest.param(
            'ALLOWED_HOSTS = []\nPRODUCTION_PROCESSES["web"]["ARGS"]["bind"] = f"0.0.0.0:{PORT}"\n',
            "warning  web: ALLOWED_HOSTS is empty with DEBUG = False, so every request to web "
            "gets 400 Bad Request — list the names clients use in ALLOWED_HOSTS",
            id="allowed-hosts-empty",
        ),
        pytest.param(
            'TASKS["default"]["QUEUES"] = 5\n',
            "warning  project: check_tasks_settings could not finish (TypeError: 'int' object is "
            "not iterable) — run python manage.py check for Django's own view; the other checks "
            "ran",
            id="hostile-setting",
        ),
    ],
)
def test_each_mistake_is_one_finding(
    tmp_path: Path, migrated: Path, mistake: str, expected: str
) -> None:
    port = free_port()
    code, lines = check(site(tmp_path, migrated, mistake), DIAG_PORT=str(port))
    assert lines == [expected.replace("{port}", str(port))]
    assert code == (1 if expected.startswith("error") else 0)


def test_unmigrated_database(tmp_path: Path, migrated: Path) -> None:
    """No database file yet (checked without creating one), then one migrated only in part."""
    folder = site(tmp_path, migrated, database=False)
    code, lines = check(folder)
    assert code == 1
    tasks, rest = lines
    assert re.fullmatch(TASKS_UNMIGRATED, tasks) and rest == INDEXES_UNMIGRATED
    assert not (folder / "db.sqlite3").exists()
    manage(folder, "migrate", "django_tasks_database", "--noinput")
    code, lines = check(folder)
    assert (code, lines) == (0, [INDEXES_UNMIGRATED])


@needs("PostgreSQL", postgres_missing)
def test_unmigrated_postgresql_database(tmp_path: Path, migrated: Path) -> None:
    """On a server the migration plan is read from the database itself (nothing written)."""
    scratch = f"prodserver_diag_{os.getpid()}"
    _postgres(f'CREATE DATABASE "{scratch}"')
    try:
        code, lines = check(site(tmp_path, migrated), DIAG_PG=scratch)
        tables = _tables(scratch)
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    assert code == 1
    tasks, rest = lines
    assert re.fullmatch(TASKS_UNMIGRATED, tasks) and rest == INDEXES_UNMIGRATED
    assert tables == []  # not even django_migrations: the check only reads


def _tables(database: str) -> list[str]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
        rows = conn.execute("select tablename from pg_tables where schemaname = 'public'")
        return [row[0] for row in rows]


def test_unreachable_database(tmp_path: Path, migrated: Path) -> None:
    port = str(free_port())  # nothing listens there
    code, lines = check(site(tmp_path, migrated), DIAG_PG="nowhere", DIAG_PG_PORT=port)
    assert code == 1
    [line] = lines
    assert line.startswith("error    project: database 'default' is unreachable (")
    assert line.endswith("— check DATABASES['default'] and that the server is running"), line
    assert line.count("check DATABASES") == 1, line  # the advice once, after the dash


def test_port_taken_by_another_program_is_named(tmp_path: Path, migrated: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines = check(site(tmp_path, migrated), DIAG_PORT=str(port))
    assert code == 1
    [line] = lines  # the holder named by its pid and command line (cut short)
    assert line.startswith(
        f"error    web: port {port} is already in use by {psutil.Process().name()} "
        f"(pid {os.getpid()}: {psutil.Process().cmdline()[0]} "
    ), line
    assert line.endswith(
        "), so web cannot listen on it — stop that program or give web another port in its ARGS"
    ), line


def test_our_own_child_on_the_port_is_not_another_program(tmp_path: Path) -> None:
    port = free_port()
    listener = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); print(1)\n"
            "sys.stdout.flush(); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "1\n"
        project = Project("s", str(tmp_path), settings=None)
        spec = {
            "BACKEND": "backends.runserver.RunServer",
            "ARGS": {"addrport": f"127.0.0.1:{port}"},
        }
        web = build_entry("web", spec, project)
        assert check_ports([web]) == []  # a child of this process: the console's own server
    finally:
        listener.kill()
        listener.wait()


def test_healthy_projects_have_no_findings(tmp_path: Path, migrated: Path, djproject: Path) -> None:
    assert check(site(tmp_path, migrated)) == (0, [])
    # Its OPTIONS are for tests of faults: a web server and a worker write, so WAL and the rest.
    options = (
        '{"transaction_mode": "IMMEDIATE", "timeout": 20, '
        '"init_command": "PRAGMA journal_mode=WAL"}'
    )
    assert check(djproject, DJPROJECT_SQLITE_OPTIONS=options) == (0, [])
    demo = {"PRODSERVER_TUI_DEMO_DIR": str(tmp_path / "demo")}  # fresh: it migrates at start
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", "--demo", "--check"],
        cwd=tmp_path,
        env=env(**demo, PRODSERVER_TUI_DEMO_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith(("error", "warn"))]


# The project's own LOGGING opens its log file when Django sets up; a beat entry keeps a
# schedule in the state folder; a task worker has a control folder in the temp folder.
WRITERS = """
LOGGING = {
    "version": 1,
    "handlers": {"file": {"class": "logging.FileHandler", "filename": HERE + "/django.log"}},
    "root": {"handlers": ["file"]},
}
PRODUCTION_PROCESSES["beat"] = {
    "BACKEND": "django_prodserver.backends.celery.CeleryBeat", "APP": "myapp.celery.app"
}
# SQLite itself makes a WAL database's -wal and -shm files on any read: not ours to count.
DATABASES["default"]["OPTIONS"] = {"timeout": 20}
"""


def test_check_writes_nothing(tmp_path: Path, migrated: Path) -> None:
    """``--check`` on a migrated project and ``--demo --check`` on a fresh demo, each in a real
    process that may write bytecode: no file or folder appears, changes or goes, anywhere
    under the project, the state folder, the temp folder or the demo folder. (Before: the
    demo was migrated, the state folders made, a temp folder made and removed, bytecode and
    the project's log file written.)"""
    folder = site(tmp_path, migrated, WRITERS)
    with contextlib.closing(sqlite3.connect(folder / "db.sqlite3")) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # see WRITERS
    for sub in ("state", "tmp"):
        (tmp_path / sub).mkdir()
    places = {
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TMPDIR": str(tmp_path / "tmp"),
        "PRODSERVER_TUI_DEMO_DIR": str(tmp_path / "demo"),
        "PRODSERVER_TUI_DEMO_PORT": str(free_port()),
        "DIAG_PORT": str(free_port()),
    }
    clean = {k: v for k, v in env(**places).items() if k != "PYTHONDONTWRITEBYTECODE"}

    def snapshot() -> dict[str, tuple[int, int, int]]:
        return {
            str(p): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in [tmp_path, *tmp_path.rglob("*")]
        }

    for argv in (["--check"], ["--demo", "--check"]):
        before = snapshot()
        done = subprocess.run(
            [sys.executable, "-m", "tui.cli", *argv],
            cwd=folder,
            env=clean,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert snapshot() == before, (argv, done.stdout)
    # The demo's database does not exist yet, and that is fine: the demo migrates at start.
    assert done.returncode == 0, done.stdout


# -- runtime findings -----------------------------------------------------------------------


def test_runtime_faults_become_findings(tmp_path: Path, migrated: Path) -> None:
    folder = site(tmp_path, migrated)
    seen = run_json([sys.executable, str(DIAG / "runtime.py"), str(folder)], folder, env(), 180)
    assert seen["healthy"] == []
    [growing] = seen["growing"]
    assert growing.startswith('warning  worker: queue "default" grew from ')
    assert growing.endswith(
        " while worker ran none — read worker's log: a worker that is up but claims nothing is "
        "frozen, hung, or cannot lock the database (SQLite), then restart it"
    )
    assert seen["failing"] == [
        "error    worker: 12 of the last 28 finished tasks failed, mostly myapp.tasks.boom, "
        "most often with ValueError (12x) — read a traceback in the task panel (t) and fix "
        "the task or what it calls"
    ]
    assert seen["unserved"] == [
        'error    project: queue "emails" has 3 tasks ready and no running worker takes them '
        '— add a DjangoTasksWorker entry to PRODUCTION_PROCESSES with ARGS {"queue": "emails"}'
    ]
    [waiting] = seen["waiting"]
    assert waiting.startswith("warning  project: the oldest ready task has waited ")
    assert waiting.endswith(
        "(more than 4 s) — add threads or processes to the workers of its queue (+ or S in "
        "the console), or start the ones that are down"
    )
    [stuck] = seen["stuck"]
    assert stuck.startswith("warning  project: 1 task is RUNNING for a worker that died (pid ")
    assert stuck.endswith(
        " is gone), e.g. myapp.tasks.hello — requeue or fail them in the task panel (t); a "
        "worker started on this host recovers them too"
    )


def test_headless_prints_a_finding_when_it_appears_and_when_it_clears(
    tmp_path: Path, migrated: Path
) -> None:
    folder = site(tmp_path, migrated)
    run = headless(folder, "--settings", "site_settings", "worker")
    try:
        run.wait_for("-- running", timeout=30)
        script = "from myapp.tasks import hello\nfor i in range(3): "
        script += "hello.using(queue_name='emails').enqueue(i)"
        manage(folder, "shell", "-c", script)
        run.wait_for("[queue-unserved]", timeout=30)
        manage(folder, "db_worker", "--queue-name", "emails", "--batch", "--no-startup-delay")
        run.wait_for("resolved: ", timeout=30)
        pids = tree(run.proc.pid)[1:]
        run.proc.send_signal(signal.SIGTERM)
        run.proc.wait(timeout=60)
        assert wait_gone(pids) == []
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
    said = [line.split(" ", 1)[1] for line in run.lines if "queue-unserved" in line]
    assert said == [
        'project | error: queue "emails" has 3 tasks ready and no running worker takes them '
        '— add a DjangoTasksWorker entry to PRODUCTION_PROCESSES with ARGS {"queue": "emails"} '
        "[queue-unserved]",
        'project | resolved: queue "emails" has 3 tasks ready and no running worker takes '
        "them [queue-unserved]",
    ]


# -- the console ----------------------------------------------------------------------------


def console(folder: Path, *args: str) -> dict[str, object]:
    argv = [sys.executable, str(DIAG / "console.py"), str(folder), *args]
    result: dict[str, object] = run_json(argv, folder, env(DIAG_PORT=str(free_port())), 180)
    return result


def test_console_shows_seed_findings_in_the_banner_and_the_pane(
    tmp_path: Path, migrated: Path
) -> None:
    seen = console(site(tmp_path, migrated, SEED), "worker")
    assert 'INSTALLED_APPS has "django-tasks", which is not a Python module' in seen["banner"]
    assert seen["panes"] == {
        "worker": "✖ TASKS is not set, so .enqueue() runs each task at once inside the caller "
        "(Django's ImmediateBackend) and worker never gets one — set TASKS = "
        '{"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}'
    }
    assert "Traceback" not in seen["header"]


def test_console_runs_check_deploy_from_the_palette(tmp_path: Path, migrated: Path) -> None:
    seen = console(site(tmp_path, migrated), "web", "worker", "--deploy")
    assert seen["banner"] == "" and seen["panes"] == {"web": "", "worker": ""}
    dialog = "\n".join(seen["dialog"])  # type: ignore[arg-type]
    assert "manage.py check --deploy: " in dialog
    assert "[security.W009] ▲ Your SECRET_KEY has less than 50 characters" in dialog
    assert seen["dialog_closed"]


def test_diff_names_what_appeared_and_what_cleared() -> None:
    old = Finding("error", "queue-unserved", None, "3 ready", "start it", topic="emails")
    same = Finding("error", "queue-unserved", None, "4 ready", "start it", topic="emails")
    other = Finding("error", "queue-unserved", None, "1 ready", "start it", topic="reports")
    assert diff([old], [same]) == ([], [])
    assert diff([old], [same, other]) == ([other], [])
    assert diff([old, other], [other]) == ([], [old])


def test_a_failed_django_setup_keeps_its_real_cause(tmp_path: Path) -> None:
    """Django cannot retry a failed setup: every later caller (statistics, migration check)
    must see the first error, not "populate() isn't reentrant"."""
    (tmp_path / "broken_settings.py").write_text(
        "SECRET_KEY = 'x'\nINSTALLED_APPS = ['django-tasks']\nDATABASES = {}\n"
    )
    script = (
        "import json\n"
        "from tui.engine.stats_helper import poll as poll_task_stats\n"
        "from backends.diagnostics import check_migrations\n"
        "first, second = poll_task_stats().error, poll_task_stats().error\n"
        "print(json.dumps([first, second, check_migrations()[0].what]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    env["DJANGO_SETTINGS_MODULE"] = "broken_settings"
    seen = run_json([sys.executable, "-c", script], tmp_path, env)
    assert all("No module named 'django-tasks'" in text for text in seen), seen
    assert not any("reentrant" in text for text in seen), seen


def test_an_entry_key_nobody_reads_is_named_with_the_likely_fix() -> None:
    project = Project("s", "/tmp", settings=SimpleNamespace(WSGI_APPLICATION="x.wsgi.application"))
    gunicorn = "django_prodserver.backends.gunicorn.GunicornServer"
    web = build_entry(
        "web",
        {"BACKEND": gunicorn, "ARG": {"workers": "4"}, "GRACE": 5, "HEALTH": "/up", "HEALTHZ": 1},
        project,
    )
    celery = build_entry(
        "celery",
        {"BACKEND": "django_prodserver.backends.celery.CeleryWorker", "APP": "x", "colour": 1},
        project,
    )
    found = check_entry_keys([web, celery])
    assert [f.line() for f in found] == [
        "warning  web: web has the key 'ARG', which prodserver-tui does not read, so it has no "
        'effect — rename it to "ARGS"',
        "warning  web: web has the key 'HEALTHZ', which prodserver-tui does not read, so it has "
        'no effect — rename it to "HEALTH"',
        "warning  celery: celery has the key 'colour', which prodserver-tui does not read, so it "
        "has no effect — remove it; an entry of this kind reads APP, ARGS, BACKEND, ENV, GRACE, "
        "HEALTH, URL",
    ]


def test_watch_history_is_bounded_by_the_live_queues(djproject: Path) -> None:
    """Queues come and go (per-tenant queue names, a table cleanup): the Watch keeps history
    for the queues of the last poll only, however many it has seen."""
    from test_recovery import run as run_django

    body = """
    from backends.diagnostics import Watch
    from backends.taskstats import QueueStats, Snapshot

    def poll(*names):
        zero = dict.fromkeys(("scheduled", "running", "succeeded_1m", "failed_1m",
                              "succeeded_total", "failed_total", "throughput_10s",
                              "throughput_60s"), 0)
        queues = [QueueStats(backend="default", queue=name, ready=1, **zero, wait_p50=None,
                             wait_p95=None, run_p50=None, run_p95=None) for name in names]
        return Snapshot(taken_at=timezone.now(), queues=queues, failures=[], by_pid={},
                        oldest_ready_wait=None)

    clock = [0.0]
    watch = Watch(clock=lambda: clock[0], unserved_for=1.0, stuck_every=1e9)
    kept = []
    for i in range(300):
        clock[0] += 1.0
        findings = watch.check(poll("default", f"tenant-{i}"), [])
        kept.append([len(watch._ready), len(watch._unserved_since), len(findings)])
    out = {"most": [max(k[0] for k in kept), max(k[1] for k in kept)], "last": kept[-1]}
    """
    out, _ = run_django(djproject, body)
    assert out["most"] == [2, 2]
    assert out["last"] == [2, 2, 1]  # "default" is still unserved; each tenant lived 1 s
