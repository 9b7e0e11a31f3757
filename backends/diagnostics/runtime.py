"""Runtime checks, from each task statistics poll and which workers are up: tasks ready in a
queue nobody serves, a backlog growing under idle workers, long waits, tasks left RUNNING by
dead workers, failure spikes; and from the processes' own output: a database that refused
connections for want of slots, and the database each task worker says it uses (database.py).
A `Watch` keeps the little history this needs.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backends import dbident, dbslots
from backends.base import Backend, ConfigError, plural
from backends.diagnostics import connections, database
from backends.diagnostics.finding import EntryLike, Finding

if TYPE_CHECKING:
    from backends.dbident import Database
    from backends.taskstats import Snapshot


@dataclass(frozen=True)
class Worker:
    """A task worker entry as the runtime checks see it: what it serves, whether it is up."""

    name: str
    backend: str  # the TASKS alias it reads
    queues: frozenset[str] | None  # None: every queue ("*")
    excluded: frozenset[str]
    up: bool  # starting or running: it will take tasks

    def serves(self, backend: str, queue: str) -> bool:
        if backend != self.backend or queue in self.excluded:
            return False
        return self.queues is None or queue in self.queues


def worker(name: str, backend: Backend | None, up: bool = False) -> Worker | None:
    """The Worker an entry runs, read from the worker's own option parser; None if not one."""
    if backend is None or backend.kind != "tasks":
        return None
    from backends.taskworker.cli import OptionError, parser

    try:
        options = parser().parse_args(backend.argv()[3:])  # after: python -m backends.taskworker
    except (ConfigError, OptionError):
        return None
    queues = {q.strip() for q in str(options.queue_name).split(",") if q.strip()}
    excluded = {q.strip() for q in str(options.exclude_queues).split(",") if q.strip()}
    return Worker(
        name=name,
        backend=str(options.backend_name),
        queues=None if "*" in queues else frozenset(queues),
        excluded=frozenset(excluded),
        up=up,
    )


class Watch:
    """Runtime checks over successive statistics polls, with the small history they need.

    Memory is bounded: a few samples per queue, covering ``grow_for`` seconds, for the queues
    of the last poll only (a queue whose rows are gone is forgotten). Call `check`
    from the thread that polled (it may read the database: stuck tasks every ``stuck_every``
    seconds, the last finished tasks only when something failed in the last minute).
    """

    def __init__(
        self,
        *,
        grow_for: float = 30.0,
        wait_limit: float = 60.0,
        unserved_for: float = 5.0,
        stuck_every: float = 30.0,
        spike_share: float = 0.2,
        spike_of: int = 100,
        spike_min: int = 10,
        refused_for: float = 90.0,
        using: str = "default",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grow_for = grow_for
        self.wait_limit = wait_limit
        self.unserved_for = unserved_for
        self.stuck_every = stuck_every
        self.spike_share = spike_share
        self.spike_of = spike_of
        self.spike_min = spike_min
        self.refused_for = refused_for  # a worker says refusals once a minute: longer than that
        self.using = using
        self.clock = clock
        self._ready: dict[tuple[str, str], deque[tuple[float, int, int]]] = {}
        self._unserved_since: dict[tuple[str, str], float] = {}
        self._stuck: list[Finding] = []
        self._stuck_at: float | None = None
        self._refused_at: dict[str, float] = {}  # entry -> when it last said "too many clients"
        self._databases: dict[str, Database] = {}  # entry -> the database it said it uses
        self._polled: list[Finding] = []
        self.last: list[Finding] = []

    def saw(self, entry: str, lines: Sequence[str], pid: int | None = None) -> None:
        """An entry's own output (its main process is ``pid``): note a database that refused
        it for want of slots, and the database it says it uses. Called for every batch of
        output, so one scan of the batch for each."""
        if not lines:
            return
        text = "\n".join(lines)
        if dbslots.refused(text):
            self._refused_at[entry] = self.clock()
        if dbident.MARK in text:
            said = database.reported(lines, pid)
            if said is not None:
                self._databases[entry] = said

    def check(
        self, stats: Snapshot, workers: Sequence[Worker], entries: Sequence[EntryLike] = ()
    ) -> list[Finding]:
        """This poll's findings; a poll that failed keeps the last of those it reads (the
        header says why), and what the output said still counts (a full server fails the
        poll too)."""
        now = self.clock()
        if not stats.error:
            live = {(q.backend, q.queue) for q in stats.queues}
            for history in (self._ready, self._unserved_since):
                for gone in history.keys() - live:
                    del history[gone]
            self._polled = [
                *self._unserved(stats, workers, now),
                *self._growing(stats, workers, now),
                *self._waiting(stats),
                *self._stuck_tasks(workers, now),
                *self._failing(stats, workers),
            ]
        self.last = [
            *self._polled,
            *self._refused(entries, now),
            *database.check_reported(dict(self._databases), self.using),  # `saw` adds meanwhile
        ]
        return self.last

    def _refused(self, entries: Sequence[EntryLike], now: float) -> list[Finding]:
        """Entries that said "too many clients" lately: the connection arithmetic, once each."""
        for entry, at in list(self._refused_at.items()):  # `saw` adds from the event loop
            if now - at > self.refused_for:
                self._refused_at.pop(entry, None)
        return [
            connections.refused(entries, entry, self.using) for entry in sorted(self._refused_at)
        ]

    def _unserved(self, stats: Snapshot, workers: Sequence[Worker], now: float) -> list[Finding]:
        found = []
        for q in stats.queues:
            key = (q.backend, q.queue)
            servers = [w for w in workers if w.serves(q.backend, q.queue)]
            if not q.ready or any(w.up for w in servers):
                self._unserved_since.pop(key, None)
                continue
            since = self._unserved_since.setdefault(key, now)
            if now - since < self.unserved_for:  # a restart is not an outage
                continue
            could = servers[0].name if servers else None
            fix = (
                f"start {could}, which serves this queue"
                if could
                else "add a DjangoTasksWorker entry to PRODUCTION_PROCESSES with "
                f'ARGS {{"queue": "{q.queue}"}}'
            )
            found.append(
                Finding(
                    "error",
                    "queue-unserved",
                    could,
                    f'queue "{q.queue}" has {plural(q.ready, "task")} ready and no running '
                    "worker takes them",
                    fix,
                    topic=q.queue,
                )
            )
        return found

    def _growing(self, stats: Snapshot, workers: Sequence[Worker], now: float) -> list[Finding]:
        """Ready tasks piling up while the workers that serve the queue run none."""
        found = []
        for q in stats.queues:
            history = self._ready.setdefault((q.backend, q.queue), deque(maxlen=512))
            history.append((now, q.ready, q.running))
            while len(history) > 2 and now - history[1][0] >= self.grow_for:
                history.popleft()  # keep one sample at least grow_for old, no more
            up = [w for w in workers if w.up and w.serves(q.backend, q.queue)]
            first_at, first, _ = history[0]
            samples = list(history)
            if (
                up
                and now - first_at >= self.grow_for
                and q.ready > first
                and all(b[1] >= a[1] for a, b in itertools.pairwise(samples))
                and all(running == 0 for _, _, running in samples)
            ):
                found.append(
                    Finding(
                        "warning",
                        "ready-growing",
                        up[0].name,
                        f'queue "{q.queue}" grew from {first} to {plural(q.ready, "ready task")} '
                        f"in {now - first_at:.0f} s while {up[0].name} ran none",
                        f"read {up[0].name}'s log: a worker that is up but claims nothing is "
                        "frozen, hung, or cannot lock the database (SQLite), then restart it",
                        topic=q.queue,
                    )
                )
        return found

    def _waiting(self, stats: Snapshot) -> list[Finding]:
        wait = stats.oldest_ready_wait
        if wait is None or wait <= self.wait_limit:
            return []
        return [
            Finding(
                "warning",
                "tasks-waiting",
                None,
                f"the oldest ready task has waited {duration(wait)} "
                f"(more than {duration(self.wait_limit)})",
                "add threads or processes to the workers of its queue (+ or S in the "
                "console), or start the ones that are down",
            )
        ]

    def _stuck_tasks(self, workers: Sequence[Worker], now: float) -> list[Finding]:
        """Tasks RUNNING for a dead worker of this host; a table scan without the optional
        index, so looked for every ``stuck_every`` seconds only."""
        if self._stuck_at is not None and now - self._stuck_at < self.stuck_every:
            return self._stuck
        from backends.taskworker.recovery import find_stuck

        self._stuck_at = now
        stuck = find_stuck(self.using)
        self._stuck = []
        if stuck:
            first = stuck[0]
            owner = next((w.name for w in workers if w.serves(w.backend, first.queue)), None)
            self._stuck = [
                Finding(
                    "warning",
                    "tasks-stuck",
                    owner,
                    f"{plural(len(stuck), 'task')} {'is' if len(stuck) == 1 else 'are'} RUNNING "
                    "for a worker that died "
                    f"({first.reason}), e.g. {first.task_path}",
                    "requeue or fail them in the task panel (t); a worker started on this "
                    "host recovers them too",
                )
            ]
        return self._stuck

    def _failing(self, stats: Snapshot, workers: Sequence[Worker]) -> list[Finding]:
        """More than ``spike_share`` of the last ``spike_of`` finished tasks failed.

        The last finished tasks are read only when something failed in the last minute:
        a healthy queue costs no query.
        """
        if not any(q.failed_1m for q in stats.queues):
            return []
        recent = _last_finished(self.spike_of, self.using)
        failed = [row for row in recent if row[0] == "FAILED"]
        if len(recent) < self.spike_min or len(failed) <= self.spike_share * len(recent):
            return []
        (path, queue), _ = Counter((row[1], row[3]) for row in failed).most_common(1)[0]
        exception, times = Counter(row[2] for row in failed).most_common(1)[0]
        owner = next((w.name for w in workers if w.serves(w.backend, queue)), None)
        return [
            Finding(
                "error",
                "tasks-failing",
                owner,
                f"{len(failed)} of the last {len(recent)} finished tasks failed, mostly "
                f"{path}, most often with {exception.rpartition('.')[2]} ({times}x)",
                "read a traceback in the task panel (t) and fix the task or what it calls",
                topic=queue,
            )
        ]


def _last_finished(limit: int, using: str) -> list[tuple[str, str, str, str]]:
    """(status, task path, exception class, queue) of the latest finished tasks."""
    from django_tasks_db.models import DBTaskResult

    rows = (
        DBTaskResult.objects.using(using)
        .filter(status__in=("SUCCESSFUL", "FAILED"), finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("status", "task_path", "exception_class_path", "queue_name")[:limit]
    )
    return [(str(s), str(p), str(e or ""), str(q)) for s, p, e, q in rows]


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
