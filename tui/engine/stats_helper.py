"""The console's statistics helper: ``python -m tui.engine.stats_helper [--diagnose '["web"]']``.

Task statistics, tracebacks, stuck tasks and the diagnostics that read the database need the
project's app registry (``django.setup()``), which on a real project is most of its code: done
in the console it made the console as big as the project (113-125 MB on a CMS). This child of
the console does all of it, so the console stays the size of itself; if it dies, the console
starts another. It runs at a lower priority than the processes the console supervises.

One JSON request a line on stdin, one JSON answer a line on stdout, in order; the end of stdin
(the console gone) ends it. Whatever the project prints goes to stderr, never into the answers.

* ``{"op": "poll", "workers": [...], "refused": {entry: [lines]},
  "databases": {entry: [pid, report line]}}`` ->
  ``{"stats": snapshot, "findings": [...] or null}`` (findings with ``--diagnose``)
* ``{"op": "setup"}`` -> ``{"findings": [...]}``: the setup checks (``--diagnose`` only)
* ``{"op": "traceback", "id": ID}`` -> ``{"text": ...}``
* ``{"op": "stuck"}`` -> ``{"stuck": [{id, task_path, queue, worker_id, reason}, ...]}``
* ``{"op": "requeue" | "fail", "id": ID}`` -> ``{"changed": n}``

A request that fails answers ``{"error": "one line"}``. Every answer repeats its request's
``seq``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.base import flat
from backends.diagnostics.finding import Finding
from backends.diagnostics.runtime import Worker
from backends.snapshot import Snapshot, failed, to_json

if TYPE_CHECKING:
    from backends.diagnostics import Watch
    from tui.project import Entry

TRACEBACK_SHOWN = 20_000  # characters, from the end: where the exception is; a task's can be MBs
NICENESS = 10  # below the servers and workers: statistics can wait, a request should not
# Taken by the console itself (its own children are not "another program" to it, but are to
# this process): every other setup check runs here.
CONSOLE_CHECKS = frozenset({"port-in-use"})


# -- the wire: the one place these become JSON and back (both ends import it) ---------------


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        **asdict(worker),
        "queues": None if worker.queues is None else sorted(worker.queues),
        "excluded": sorted(worker.excluded),
    }


def worker_from_json(data: dict[str, Any]) -> Worker:
    queues = data["queues"]
    return Worker(
        name=str(data["name"]),
        backend=str(data["backend"]),
        queues=None if queues is None else frozenset(map(str, queues)),
        excluded=frozenset(map(str, data["excluded"])),
        up=bool(data["up"]),
    )


def finding_from_json(data: dict[str, Any]) -> Finding:
    return Finding(**data)


# -- the helper's side -------------------------------------------------------------------------


def poll() -> Snapshot:
    """One statistics round: Django is set up on first use, connections closed after."""
    from django.db import connections

    from backends import taskstats
    from backends.django_setup import SetupFailed, setup_once

    try:
        setup_once()
    except SetupFailed as e:  # the project's apps failed to load: say so, keep the console up
        return failed(f"Django cannot load the project's apps: {e}")
    try:
        return taskstats.poll()
    except Exception as e:
        return failed(f"cannot read task statistics: {type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(Exception):
            connections.close_all()


def traceback(task_id: str) -> str:
    from django.db.models.functions import Length, Right
    from django_tasks_db.models import DBTaskResult

    rows = (
        DBTaskResult.objects.filter(id=task_id)
        .annotate(tail=Right("traceback", TRACEBACK_SHOWN), size=Length("traceback"))
        .values_list("tail", "size")
    )
    tail, size = next(iter(rows), ("", 0))
    if not tail:
        return "(no traceback recorded)"
    if size > TRACEBACK_SHOWN:
        return f"… {size - TRACEBACK_SHOWN} characters before these not shown\n{tail}"
    return str(tail)


class Helper:
    """Answers requests; with ``entries`` (a real project) it also runs the diagnostics."""

    def __init__(self, entries: list[Entry] | None, settings: Any, watch: Watch | None) -> None:
        self.entries = entries
        self.settings = settings
        self.watch = watch

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        from django.db import connections

        op = request.get("op")
        try:
            if op == "poll":
                return self.poll(request)
            handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
                self, f"op_{op}", None
            )
            if handler is None:
                return {"error": f"unknown request {flat(repr(op))[:80]}"}
            return handler(request)
        except Exception as e:  # one line back to the console, which shows it
            return {"error": f"{type(e).__name__}: {flat(str(e))}"}
        finally:
            if "django.db" in sys.modules:
                with contextlib.suppress(Exception):
                    connections.close_all()

    def poll(self, request: dict[str, Any]) -> dict[str, Any]:
        stats = poll()
        findings = None
        if self.watch is not None and self.entries is not None:
            for entry, lines in (request.get("refused") or {}).items():
                self.watch.saw(str(entry), [str(line) for line in lines])
            for entry, (pid, line) in (request.get("databases") or {}).items():
                self.watch.saw(str(entry), [str(line)], pid if isinstance(pid, int) else None)
            workers = [worker_from_json(w) for w in request.get("workers") or []]
            try:
                found = self.watch.check(stats, workers, self.entries)
            except Exception:  # a check that cannot read now must not end the statistics
                found = self.watch.last
            findings = [asdict(f) for f in found]
        return {"stats": to_json(stats), "findings": findings}

    def op_setup(self, request: dict[str, Any]) -> dict[str, Any]:
        from backends.diagnostics import check_setup

        if self.entries is None:
            return {"findings": []}
        found = check_setup(self.settings, self.entries)
        return {"findings": [asdict(f) for f in found if f.code not in CONSOLE_CHECKS]}

    def op_traceback(self, request: dict[str, Any]) -> dict[str, Any]:
        _setup()
        return {"text": traceback(str(request["id"]))}

    def op_stuck(self, request: dict[str, Any]) -> dict[str, Any]:
        _setup()
        from backends.taskworker.recovery import find_stuck

        shown = ("id", "task_path", "queue", "worker_id", "reason")
        return {"stuck": [{k: str(getattr(s, k)) for k in shown} for s in find_stuck()]}

    def op_requeue(self, request: dict[str, Any]) -> dict[str, Any]:
        _setup()
        from backends.taskworker.recovery import requeue

        return {"changed": requeue([str(request["id"])])}

    def op_fail(self, request: dict[str, Any]) -> dict[str, Any]:
        _setup()
        from backends.taskworker.recovery import mark_failed

        return {"changed": mark_failed([str(request["id"])], "marked failed from prodserver-tui")}


def _setup() -> None:
    from backends.django_setup import setup_once

    setup_once()


def _project(names: list[str], watch: dict[str, Any]) -> Helper:
    """The entries as the console built them, from the same settings (its environment)."""
    from backends.diagnostics import Watch
    from tui.project import discover, entries

    project = discover(None, [], Path.cwd())
    return Helper(entries(project, names), project.settings, Watch(**watch))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tui.engine.stats_helper")
    p.add_argument("--diagnose", metavar="JSON", help="run the diagnostics for these entries")
    p.add_argument("--watch", default="{}", help="the runtime checks' thresholds, as JSON")
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICENESS)
    # The answers get their own copy of stdout; anything the project prints goes to stderr.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    helper = (
        Helper(None, None, None)
        if args.diagnose is None
        else _project(json.loads(args.diagnose), json.loads(args.watch))
    )
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError as e:
            reply: dict[str, Any] = {"error": f"not a JSON request: {e}"}
        else:
            reply = helper.answer(request if isinstance(request, dict) else {})
            reply["seq"] = request.get("seq") if isinstance(request, dict) else None
        answers.write(json.dumps(reply) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
