"""SQLite under a web server and a task worker at once: "database is locked", and what ends it.

Why this exists
---------------
On a real project with a worker running (2 x 2, even idle), the site's own saves and its tasks
failed with ``OperationalError: database is locked``, with our worker and with ``db_worker``
alike; ``OPTIONS = {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command":
"PRAGMA journal_mode=WAL;"}`` ended it. The reason is SQLite's: a transaction Django begins
with a plain ``BEGIN`` reads first and asks for the write lock only at its first write, and
SQLite refuses that upgrade at once, without waiting for the busy timeout, whenever another
connection holds or is about to commit the write lock (it would deadlock). ``IMMEDIATE`` takes
the write lock at ``BEGIN``, where the busy timeout does wait; WAL lets readers and the writer
run side by side. This measures, in ONE run on the SAME kind of database, how often a site's
writes and its tasks fail with Django's default settings and with those OPTIONS, for our worker
(whose own connections take immediate transactions, and a 20 s busy timeout unless OPTIONS set
one) and for ``db_worker``; ``--before REV`` adds our worker as it was at a git revision.

What it does
------------
* A throwaway project: models ``Page`` and ``Revision``, a task ``reindex(n)`` that, like a CMS's
  search-index update, reads a page and rewrites its index rows in one ``transaction.atomic()``;
  two settings modules, Django's default SQLite settings and the recommended OPTIONS.
* Each run takes a fresh copy of a migrated database (rollback journal, as Django creates it),
  enqueues ``--tasks`` tasks, starts the writer (a separate process that, like a web request,
  reads a page, saves it and adds a revision in one ``atomic()``, then pauses ``--pause`` s, in
  a loop), then starts the worker (ours ``--processes 2 --threads 2`` or ``db_worker``, default
  ``--interval``) and waits until every task finished, the worker exited, or nothing finished
  for ``--stall`` s. Writer and worker both use the run's settings.
* Counts: tasks FAILED (and of those, failed on "database is locked"), tasks never finished,
  the writer's requests and its errors, the worker's log lines that say the database is locked
  (ours retries those; db_worker takes a locked claim for "no task"). Rounds interleave the
  configurations (``--repeat``), and the counts are summed over them.

Run from the repository root (about 3 minutes on a quiet 2-core machine)::

    .venv/bin/python bench/sqlite_locking.py --before 0c4605b \
        --json bench/results/sqlite_locking.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO as ROOT
from bench.harness import Column, Reaper, Report, log, terminate, trap_signals

TABLE = "django_tasks_database_dbtaskresult"
PAGES = 20
RECOMMENDED = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}

# -- the throwaway project ----------------------------------------------------------------------

SETTINGS = """\
import importlib.util
import os

SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = (
    ["django_tasks"] if importlib.util.find_spec("django.tasks") is None else []
) + ["django_tasks_db", "lockapp"]
TASKS = {{"default": {{"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}}}
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BENCH_DB"],
        "OPTIONS": {options!r},
    }}
}}
"""

MODELS = """\
from django.db import models


class Page(models.Model):
    title = models.CharField(max_length=100)
    hits = models.IntegerField(default=0)


class Revision(models.Model):
    page = models.ForeignKey(Page, on_delete=models.CASCADE)
    hits = models.IntegerField()


class IndexEntry(models.Model):
    page = models.ForeignKey(Page, on_delete=models.CASCADE)
    word = models.CharField(max_length=50)
"""

TASKS = f"""\
from django.db import transaction

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from lockapp.models import IndexEntry, Page


@task()
def reindex(n):
    \"\"\"A search-index update: read the page, then rewrite its index rows, in one atomic().\"\"\"
    with transaction.atomic():
        page = Page.objects.get(pk=n % {PAGES} + 1)
        IndexEntry.objects.filter(page=page).delete()
        IndexEntry.objects.bulk_create(
            IndexEntry(page=page, word=f"{{page.title}}-{{i}}") for i in range(5)
        )
"""

# A web server's writes: a request reads a page, saves it and adds a revision, in one atomic()
# (as ATOMIC_REQUESTS, or a CMS's page save, does). Counts requests and errors until SIGTERM.
WRITER = f"""\
import json
import random
import signal
import sys
import time

import django

django.setup()

from django.db import OperationalError, transaction

from lockapp.models import Page, Revision

running = True


def stop(signum, frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
pause = float(sys.argv[1])
requests = locked = other = 0
first_other = ""
print("ready", flush=True)
while running:
    requests += 1
    try:
        with transaction.atomic():
            page = Page.objects.get(pk=random.randint(1, {PAGES}))
            page.hits += 1
            page.save(update_fields=["hits"])
            Revision.objects.create(page=page, hits=page.hits)
    except OperationalError as e:
        if "locked" in str(e):
            locked += 1
        else:
            other += 1
            first_other = first_other or str(e)
    time.sleep(pause)
print(json.dumps({{"requests": requests, "locked": locked, "other": other, "first": first_other}}))
"""

SEED = f"""\
import sys

import django

django.setup()

from lockapp import tasks
from lockapp.models import Page

if sys.argv[1] == "pages":
    Page.objects.bulk_create(Page(title=f"page{{n}}") for n in range({PAGES}))
else:
    for n in range(int(sys.argv[1])):
        tasks.reindex.enqueue(n)
"""

MANAGE = """\
import sys

from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


@dataclass
class Project:
    folder: Path
    before: Path | None = None  # our worker's code at --before REV

    @property
    def template(self) -> Path:
        return self.folder / "template.sqlite3"

    @property
    def db(self) -> Path:
        return self.folder / "run.sqlite3"

    def env(self, settings: str, code: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = f"settings_{settings}"
        env["BENCH_DB"] = str(self.db)
        paths = (str(self.folder), str(code or ROOT), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def python(self, *args: str, settings: str = "default") -> None:
        subprocess.run(
            [sys.executable, *args],
            cwd=self.folder,
            env=self.env(settings),
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    def fresh(self) -> None:
        """A copy of the migrated template: a rollback journal, as Django makes the file."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.template, self.db)


def write_project(folder: Path, before: str | None) -> Project:
    app = folder / "lockapp"
    (app / "migrations").mkdir(parents=True)
    for path, text in (
        (app / "__init__.py", ""),
        (app / "migrations" / "__init__.py", ""),
        (app / "models.py", MODELS),
        (app / "tasks.py", TASKS),
        (folder / "writer.py", WRITER),
        (folder / "seed.py", SEED),
        (folder / "manage.py", MANAGE),
        (folder / "settings_default.py", SETTINGS.format(options={})),
        (folder / "settings_recommended.py", SETTINGS.format(options=RECOMMENDED)),
    ):
        path.write_text(text)
    project = Project(folder)
    if before:
        project.before = folder / "before"
        project.before.mkdir()
        archive = subprocess.run(
            ["git", "archive", before, "backends"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(project.before, filter="data")
    project.python("manage.py", "makemigrations", "lockapp", "-v", "0")
    project.python("manage.py", "migrate", "--noinput", "-v", "0")
    project.python("seed.py", "pages")
    project.db.rename(project.template)
    return project


# -- one run ------------------------------------------------------------------------------------

REAPER = Reaper()


@dataclass(frozen=True)
class Config:
    worker: str  # "ours", "ours@REV" or "db_worker"
    settings: str  # "default" or "recommended"

    def argv(self) -> list[str]:
        if self.worker == "db_worker":
            return [sys.executable, "manage.py", "db_worker", "--no-reload", "--queue-name=default"]
        return [
            sys.executable,
            "-m",
            "backends.taskworker",
            "--processes=2",
            "--threads=2",
            "--queue-name=default",
        ]


@dataclass
class Counts:
    tasks: int = 0
    failed: int = 0
    failed_locked: int = 0
    unfinished: int = 0
    requests: int = 0
    writer_locked: int = 0
    writer_other: int = 0
    worker_locked: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            if name != "notes":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.notes += [n for n in other.notes if n not in self.notes]


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """A read-only look, retried while a writer holds the lock (it is the bench's, not a run's)."""
    for attempt in range(200):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                return list(conn.execute(sql).fetchall())
        except sqlite3.OperationalError:
            if attempt == 199:
                raise
            time.sleep(0.05)
    return []


def finished(db: Path) -> int:
    sql = f"SELECT COUNT(*) FROM {TABLE} WHERE status IN ('SUCCESSFUL', 'FAILED')"
    return int(query(db, sql)[0][0])  # type: ignore[call-overload]


def run_once(project: Project, config: Config, tasks: int, options: argparse.Namespace) -> Counts:
    project.fresh()
    project.python("seed.py", str(tasks), settings=config.settings)
    logs = project.folder / "logs"
    logs.mkdir(exist_ok=True)
    code = project.before if config.worker.startswith("ours@") else None
    writer = REAPER.start(
        [sys.executable, "writer.py", str(options.pause)],
        cwd=project.folder,
        env=project.env(config.settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert writer.stdout is not None
    if writer.stdout.readline().strip() != b"ready":
        raise RuntimeError("the writer did not start")
    worker_log = logs / f"{config.worker}-{config.settings}.log"
    with worker_log.open("wb") as out:
        worker = REAPER.start(
            config.argv(),
            cwd=project.folder,
            env=project.env(config.settings, code),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    counts = Counts(tasks=tasks)
    began = last_change = time.monotonic()
    done = 0
    while done < tasks:
        time.sleep(0.2)
        now = finished(project.db)
        if now != done:
            done, last_change = now, time.monotonic()
        if worker.poll() is not None:
            counts.notes.append(f"{config.worker} exited ({worker.returncode})")
            break
        if time.monotonic() - last_change > options.stall:
            counts.notes.append(f"stalled {options.stall:.0f} s")
            break
    counts.seconds = time.monotonic() - began
    terminate([worker])
    writer.send_signal(signal.SIGTERM)
    out_text, _ = writer.communicate(timeout=30)
    said = json.loads(out_text.decode().strip().splitlines()[-1])
    counts.requests, counts.writer_locked = said["requests"], said["locked"]
    counts.writer_other = said["other"]
    if said["first"]:
        counts.notes.append(f"writer: {said['first'][:80]}")
    rows = query(project.db, f"SELECT status, traceback FROM {TABLE}")
    counts.failed = sum(1 for status, _ in rows if status == "FAILED")
    counts.failed_locked = sum(
        1 for status, tb in rows if status == "FAILED" and "locked" in str(tb or "")
    )
    counts.unfinished = sum(1 for status, _ in rows if status not in ("SUCCESSFUL", "FAILED"))
    counts.worker_locked = worker_log.read_text(errors="replace").count("database is locked")
    return counts


# -- main ---------------------------------------------------------------------------------------

COLUMNS = [
    Column("worker", "worker"),
    Column("settings", "SQLite settings"),
    Column("tasks", "tasks", right=True),
    Column("failed", "tasks failed / 1,000", "{:.1f}", right=True),
    Column("locked", "of them locked", right=True),
    Column("unfinished", "never finished", right=True),
    Column("requests", "writer requests", right=True),
    Column("errors", "writer errors / 1,000", "{:.1f}", right=True),
    Column("worker_locked", "worker log: locked", right=True),
    Column("rate", "tasks/s", "{:.0f}", right=True),
    Column("notes", "notes"),
]
LABELS = {
    "default": "Django's defaults",
    "recommended": "IMMEDIATE, timeout 20, WAL",
}


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--tasks", type=int, default=300, help="tasks per run (%(default)s)")
    p.add_argument("--repeat", type=int, default=2, help="rounds, counts summed (%(default)s)")
    p.add_argument("--pause", type=float, default=0.01, help="writer pause, s (%(default)s)")
    p.add_argument("--stall", type=float, default=30.0, help="give up after no progress, s")
    p.add_argument("--before", metavar="REV", help="also run our worker as it was at REV")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    p.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    return p.parse_args()


def main() -> int:
    options = arguments()
    trap_signals()
    report = Report("sqlite_locking")
    table = report.table(
        f"SQLite, a writer process beside a task worker ({options.tasks:,} tasks per run, "
        f"{options.repeat} rounds summed, writer pause {options.pause * 1000:.0f} ms)",
        COLUMNS,
    )
    table.notes += [
        "ours = python -m backends.taskworker --processes 2 --threads 2; db_worker = one process;",
        "a task and a writer request each read, then write, in one transaction.atomic();",
        "locked = failed with OperationalError: database is locked; "
        "worker log = its lines saying so (ours retries them).",
    ]
    folder = Path(tempfile.mkdtemp(prefix="sqlite-locking-bench-"))
    workers = ["db_worker", *([f"ours@{options.before}"] if options.before else []), "ours"]
    configs = [Config(w, s) for s in ("default", "recommended") for w in workers]
    code = 0
    try:
        project = write_project(folder, options.before)
        totals = {c: Counts() for c in configs}
        for round_ in range(options.repeat):
            for config in configs:
                counts = run_once(project, config, options.tasks, options)
                log(
                    f"#{round_ + 1} {config.worker:<16} {config.settings:<12} failed "
                    f"{counts.failed} ({counts.failed_locked} locked), unfinished "
                    f"{counts.unfinished}, writer {counts.writer_locked}/{counts.requests} locked"
                    f", worker log locked {counts.worker_locked}, {counts.seconds:.1f} s"
                    + (f"; {'; '.join(counts.notes)}" if counts.notes else "")
                )
                totals[config].add(counts)
        for config, t in totals.items():
            table.add(
                worker=config.worker,
                settings=LABELS[config.settings],
                tasks=t.tasks,
                failed=1000 * t.failed / t.tasks,
                locked=t.failed_locked,
                unfinished=t.unfinished,
                requests=t.requests,
                errors=1000 * (t.writer_locked + t.writer_other) / max(t.requests, 1),
                worker_locked=t.worker_locked,
                rate=(t.tasks - t.unfinished) / t.seconds if t.seconds else None,
                notes="; ".join(t.notes),
            )
    except KeyboardInterrupt:
        log("interrupted: stopping the processes, removing the folder")
        table.notes.append("INTERRUPTED: rows so far")
        code = 130
    finally:
        REAPER.kill_all()
        if options.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return report.finish(options.json) or code


if __name__ == "__main__":
    sys.exit(main())
