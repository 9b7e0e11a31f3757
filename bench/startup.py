"""Start-up and size on a big project: time to the first HTTP 200 and the console's RSS,
against honcho running the same commands.

Why this exists
---------------
On a real CMS project the console weighed 113-125 MB and its web server answered 2.7 s after
launch, against 1.9 s under honcho: it loaded the whole project into itself (to read task
statistics and run the checks) while the children started. It now starts the children first
and leaves everything that needs the project's apps to a child, the statistics helper. This
script keeps both promises measured: console RSS at most 70 MB on any project, and the first
HTTP 200 no later than 1.1x honcho's on the same entries.

What it measures
----------------
Two projects, each with a gunicorn web entry (2 workers) and task workers:

* ``big``: a generated project of the Django admin and the contrib apps (admin, auth,
  contenttypes, sessions, messages, staticfiles, sites, flatpages, redirects, sitemaps,
  humanize, admindocs) plus one app of ``--models`` models (400), every one registered in the
  admin, and django-tasks-db; SQLite, migrated once before the runs.
* ``demo``: ``prodserver-tui --demo`` as a user runs it (its migrate included), in a private
  demo folder and port.

Each run starts the tool, then asks ``GET /`` every 10 ms: the first answer with status 200
is the time to first 200 (from just before the tool's process starts). Then, after
``--settle`` seconds (the statistics helper has polled and the setup checks have run), the
RSS of the console's own processes (the screen and its engine), of its statistics helper and
of its watchdog, the largest
of 5 samples a second apart; for honcho its own process. The console runs in a 160x48
pseudo-terminal (the full-screen app, as users run it) and is quit with ``q``; honcho gets
SIGTERM. honcho's Procfile holds the console's own resolved commands and environment for the
same entries (``env K=V ... argv``), so both start the same processes.

``--before PATH`` adds the console from another checkout (e.g. a worktree of an older
commit) as a third tool, run the same way, for before/after figures in one run.

    .venv/bin/python bench/startup.py --runs 3 --json bench/results/startup.json
    .venv/bin/python bench/startup.py --runs 1 --only big --before /path/to/old/checkout

Tools run in turn within each round (``rounds``), so drifts of the machine hit all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    MB,
    REPO,
    Column,
    Reaper,
    Report,
    Skip,
    Table,
    in_pty,
    log,
    median,
    piped,
    rounds,
    rss,
    stop,
    trap_signals,
    venv_program,
    workdir,
)

TARGET_RSS_MB = 70.0
TARGET_RATIO = 1.1  # first 200 at most this times honcho's
FIRST_200_TIMEOUT = 120.0
QUIT_KEY = b"q"

BIG_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.flatpages",
    "django.contrib.redirects",
    "django.contrib.sitemaps",
    "django.contrib.humanize",
    "django.contrib.admindocs",
]
BIG_SETTINGS = """\
import os
from importlib.util import find_spec

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
SITE_ID = 1
INSTALLED_APPS = {apps!r} + (["django_tasks"] if find_spec("django.tasks") is None else []) + [
    "django_tasks_db", "backends.taskworker", "catalog"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {{"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]}},
}}]
ROOT_URLCONF = "bigsite.urls"
WSGI_APPLICATION = "bigsite.wsgi.application"
STATIC_URL = "/static/"
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": {db!r},
    "OPTIONS": {{"timeout": 20}},
}}}}
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PRODUCTION_PROCESSES = {{
    "web": {{
        "BACKEND": "django_prodserver.backends.gunicorn.GunicornServer",
        "ARGS": {{"bind": "127.0.0.1:{port}", "workers": "2"}},
    }},
    "worker": {{
        "BACKEND": "django_prodserver.backends.django_tasks.DjangoTasksWorker",
        "ARGS": {{"queue": "default"}},
    }},
}}
"""
BIG_URLS = """\
from django.contrib import admin
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("ok")), path("admin/", admin.site.urls)]
"""
BIG_WSGI = """\
import os
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bigsite.settings")
application = get_wsgi_application()
"""


def big_models(count: int) -> tuple[str, str]:
    """``count`` models of a dozen fields, each pointing at the one before, and their admin."""
    models = ["from django.db import models\n"]
    admin = ["from django.contrib import admin\n", "from catalog import models\n"]
    for i in range(count):
        link = f"    parent = models.ForeignKey('Item{i - 1}', models.CASCADE, null=True)\n"
        models.append(
            f"\nclass Item{i}(models.Model):\n"
            "    name = models.CharField(max_length=200)\n"
            "    slug = models.SlugField(unique=True)\n"
            "    body = models.TextField(blank=True)\n"
            "    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)\n"
            "    count = models.IntegerField(default=0)\n"
            "    live = models.BooleanField(default=True)\n"
            "    created = models.DateTimeField(auto_now_add=True)\n"
            "    updated = models.DateTimeField(auto_now=True)\n"
            "    email = models.EmailField(blank=True)\n"
            "    url = models.URLField(blank=True)\n"
            "    data = models.JSONField(default=dict)\n" + (link if i else "")
        )
        admin.append(
            f"\n@admin.register(models.Item{i})\nclass Item{i}Admin(admin.ModelAdmin):\n"
            "    list_display = ('name', 'slug', 'price', 'live')\n"
            "    search_fields = ('name', 'body')\n"
            "    list_filter = ('live', 'created')\n"
        )
    return "".join(models), "".join(admin)


@dataclass
class Project:
    """Where a tool runs, what it is told, and the URL that answers when it is up."""

    cwd: Path
    console_args: list[str]  # after the program: --demo, or --settings ... --pythonpath ...
    env: dict[str, str]
    url: str
    procfile: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_checked(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


# The console's resolved commands for the entries, printed by a fresh interpreter (as the
# console builds them), for honcho's Procfile.
LAUNCHES = """\
import json, sys
from pathlib import Path
from tui.project import discover, entries
project = discover(sys.argv[1] or None, [p for p in sys.argv[2:] if p], Path.cwd())
out = {}
for e in entries(project):
    launch = e.launch()
    out[e.name] = {"argv": list(launch.argv), "env": dict(launch.env)}
print(json.dumps(out))
"""


def write_procfile(project: Project, settings: str, pythonpath: str) -> None:
    argv = [sys.executable, "-c", LAUNCHES, settings, pythonpath]
    launches = json.loads(run_checked(argv, project.cwd, project.env))
    lines = []
    for name, launch in launches.items():
        env = [f"{k}={v}" for k, v in launch["env"].items()]
        lines.append(f"{name}: {shlex.join(['env', *env, *launch['argv']])}\n")
    project.procfile.write_text("".join(lines))


def big_project(tmp: Path, models: int) -> Project:
    port = free_port()
    site = tmp / "bigsite"
    catalog = tmp / "catalog"
    for folder in (site, catalog):
        folder.mkdir()
        (folder / "__init__.py").write_text("")
    db = str(tmp / "db.sqlite3")
    (site / "settings.py").write_text(BIG_SETTINGS.format(apps=BIG_APPS, db=db, port=port))
    (site / "urls.py").write_text(BIG_URLS)
    (site / "wsgi.py").write_text(BIG_WSGI)
    model_code, admin_code = big_models(models)
    (catalog / "models.py").write_text(model_code)
    (catalog / "admin.py").write_text(admin_code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(REPO)])}
    env["DJANGO_SETTINGS_MODULE"] = "bigsite.settings"
    log(f"  big: migrating a project of {models} admin models …")
    run_checked([sys.executable, "-m", "django", "migrate", "--run-syncdb", "-v0"], tmp, env)
    env.pop("DJANGO_SETTINGS_MODULE")
    project = Project(
        tmp,
        ["--settings", "bigsite.settings", "--pythonpath", str(tmp)],
        env,
        f"http://127.0.0.1:{port}/",
        tmp / "Procfile",
    )
    write_procfile(project, "bigsite.settings", str(tmp))
    return project


def demo_project(tmp: Path) -> Project:
    port = free_port()
    env = {**os.environ, "PRODSERVER_TUI_DEMO_DIR": str(tmp / "demo"), "PYTHONPATH": str(REPO)}
    env["PRODSERVER_TUI_DEMO_PORT"] = str(port)
    (tmp / "demo").mkdir(mode=0o700)
    run_checked([sys.executable, "-c", "from tui import demo; demo.prepare()"], tmp, env)
    project = Project(tmp, ["--demo"], env, f"http://127.0.0.1:{port}/", tmp / "Procfile")
    write_procfile(project, "tui.demo.settings", "")
    return project


@dataclass
class Startup:
    first_200: float  # seconds from launch
    main_rss: int  # bytes, the tool's own process
    helper_rss: int = 0  # the statistics helper
    watchdog_rss: int = 0


def wait_200(url: str, began: float, proc: subprocess.Popen[bytes]) -> float:
    while True:
        if time.monotonic() - began > FIRST_200_TIMEOUT:
            raise RuntimeError(f"no HTTP 200 from {url} within {FIRST_200_TIMEOUT:.0f} s")
        if proc.poll() is not None:
            raise RuntimeError(f"the tool exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)


def wait_port_free(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} still answers 30 s after the last run")


def largest(sample: Callable[[], dict[str, int]], times: int = 5) -> dict[str, int]:
    top: dict[str, int] = {}
    for i in range(times):
        for role, value in sample().items():
            top[role] = max(top.get(role, 0), value)
        if i < times - 1:
            time.sleep(1.0)
    return top


def console_roles(root: psutil.Process) -> dict[str, int]:
    """The console's own RSS ("main": the screen and its engine, a process of its own since
    server mode), its statistics helper's and its watchdog's (the engine's children)."""
    found = {"main": rss(root), "helper": 0, "watchdog": 0}
    for child in root.children(recursive=True):
        try:
            argv = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for role, module in (
            ("main", "tui.cli engine"),
            ("helper", "tui.engine.stats_helper"),
            ("watchdog", "tui.engine.watchdog"),
        ):
            if module in argv:
                found[role] += rss(child)
    return found


def run_console(
    reaper: Reaper, project: Project, settle: float, source: Path | None
) -> Callable[[], Startup]:
    def run() -> Startup:
        wait_port_free(project.url)
        program = venv_program("prodserver-tui")
        argv = [program] if program and source is None else [sys.executable, "-m", "tui.cli"]
        env_path = str(source or REPO)
        # in_pty passes this process's environment: the project's goes through `env`.
        env = {**project.env, "PYTHONPATH": os.pathsep.join([env_path, project.env["PYTHONPATH"]])}
        argv = ["env", *(f"{k}={v}" for k, v in env.items() if os.environ.get(k) != v), *argv]
        began = time.monotonic()
        with in_pty(reaper, [*argv, *project.console_args], project.cwd) as s:
            first = wait_200(project.url, began, s.proc)
            time.sleep(max(0.0, settle - (time.monotonic() - began)))
            sizes = largest(lambda: console_roles(s.root))
            stop(s, QUIT_KEY)
        return Startup(first, sizes["main"], sizes["helper"], sizes["watchdog"])

    return run


def run_honcho(reaper: Reaper, project: Project, settle: float) -> Callable[[], Startup]:
    def run() -> Startup:
        program = venv_program("honcho")
        if program is None:
            raise Skip("not found (.venv/bin/pip install honcho)")
        wait_port_free(project.url)
        argv = ["env", *(f"{k}={v}" for k, v in project.env.items() if os.environ.get(k) != v)]
        argv += [program, "start", "-f", str(project.procfile)]
        began = time.monotonic()
        with piped(reaper, argv, project.cwd) as s:
            first = wait_200(project.url, began, s.proc)
            time.sleep(max(0.0, settle - (time.monotonic() - began)))
            sizes = largest(lambda: {"main": rss(s.root)})
            stop(s, None)
        return Startup(first, sizes["main"])

    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", choices=("big", "demo"), action="append")
    p.add_argument("--models", type=int, default=400, help="models of the big project's app")
    p.add_argument("--settle", type=float, default=15.0, help="seconds before measuring RSS")
    p.add_argument("--before", type=Path, help="also run the console from this checkout")
    p.add_argument("--json", help="write the results here, for bench/report.py")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trap_signals()
    report = Report("startup")
    table = report.table(
        "Start-up and size, the same entries under each tool (medians over runs)",
        [
            Column("project", "project"),
            Column("tool", "tool"),
            Column("first200", "first HTTP 200, s", "{:.2f}", True),
            Column("ratio", "vs honcho", "{:.2f}x", True),
            Column("main", "console / honcho RSS, MB", "{:.0f}", True),
            Column("helper", "stats helper RSS, MB", "{:.0f}", True),
            Column("watchdog", "watchdog RSS, MB", "{:.0f}", True),
            Column("ok", "ok"),
        ],
    )
    reaper = Reaper()
    try:
        for name in args.only or ["big", "demo"]:
            with workdir(f"startup-{name}") as tmp:
                project = big_project(tmp, args.models) if name == "big" else demo_project(tmp)
                tools: list[tuple[str, Callable[[], Startup]]] = [
                    ("prodserver-tui", run_console(reaper, project, args.settle, None)),
                    ("honcho start", run_honcho(reaper, project, args.settle)),
                ]
                if args.before is not None:
                    before = f"prodserver-tui before ({args.before.name})"
                    tools.append((before, run_console(reaper, project, args.settle, args.before)))
                results, skipped = rounds(
                    reaper,
                    args.runs,
                    tools,
                    lambda r: (
                        f"first 200 {r.first_200:.2f} s, RSS {r.main_rss / MB:.0f} MB"
                        f" + helper {r.helper_rss / MB:.0f} MB"
                    ),
                    name,
                )
                add_rows(report, table, name, results, skipped)
    finally:
        reaper.kill_all()
    table.notes.append(
        f"Targets: the console's own RSS at most {TARGET_RSS_MB:.0f} MB; its first 200 at most "
        f"{TARGET_RATIO}x honcho's. The statistics helper (a child) holds the project's apps "
        "for the statistics and checks; its RSS is shown apart."
    )
    return report.finish(args.json)


def add_rows(
    report: Report,
    table: Table,
    project: str,
    results: dict[str, list[Startup]],
    skipped: dict[str, str],
) -> None:
    honcho = median([r.first_200 for r in results.get("honcho start", [])])
    for tool, runs in results.items():
        if not runs:
            table.add(project=project, tool=tool, ok=f"skipped: {skipped.get(tool, '')}")
            continue
        first = median([r.first_200 for r in runs])
        ratio = first / honcho if first is not None and honcho else None
        main_mb = (median([r.main_rss for r in runs]) or 0) / MB
        ours = tool != "honcho start"
        ok = ""
        if tool == "prodserver-tui":
            good = main_mb <= TARGET_RSS_MB and (ratio is None or ratio <= TARGET_RATIO)
            ok = "yes" if good else "NO"
            if not good:
                report.failed.append(
                    f"{project}: console RSS {main_mb:.0f} MB, first 200 {ratio or 0:.2f}x honcho"
                )
        table.add(
            project=project,
            tool=tool,
            first200=first,
            ratio=ratio,
            main=main_mb,
            helper=(median([r.helper_rss for r in runs]) or 0) / MB if ours else None,
            watchdog=(median([r.watchdog_rss for r in runs]) or 0) / MB if ours else None,
            ok=ok,
        )


if __name__ == "__main__":
    sys.exit(main())
