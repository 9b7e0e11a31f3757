"""Push wake-up: an idle thread starts a new task within milliseconds, not at its next poll.

Polling every second made the wait from ``.enqueue()`` to the start half a second on average,
and polling faster multiplies the idle queries. So each worker process keeps one listener
thread (`Wakeup`) that hears of every task that becomes ready and rings the pool, which wakes
one idle thread (or, with none idle, makes the next thread that goes idle look again before
it waits: no ring is lost between an empty claim and the wait):

* PostgreSQL: ``LISTEN`` on its own connection. The trigger this app's migration installs
  (0002) notifies on every insert or requeue of a READY row, so every producer rings it: other
  hosts, code that never imports this project, a requeue typed in psql. PostgreSQL folds
  identical notifications of one transaction, so a burst enqueued at once is one ring, and the
  woken thread wakes the next as long as it finds work (`Pool.found`): wake-ups stay bounded
  by idle threads.
* SQLite: the doorbell (`backends.taskworker.doorbell`), rung by producers on this machine.

A ring names the task's backend, queue and due time: rings for queues this process does not
serve are ignored, and a deferred task rings a timer at its time. Polling stays as the safety
net, every ``--safety-interval`` while push works and every ``--interval`` while it does not;
a lost listener is re-established with backoff. The mode is said in one line whenever it
changes (`backends.wakeup_line`), which the console shows.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from backends import dbslots, wakeup_line
from backends.backoff import Backoff
from backends.base import flat
from backends.taskworker import doorbell
from backends.taskworker.setup import log
from backends.wakeup_line import DOORBELL, NOTIFY, POLLING

if TYPE_CHECKING:
    import argparse

CHANNEL = TRIGGER = "prodserver_tui_ready"
TABLE = "django_tasks_database_dbtaskresult"
#: Seconds: beyond this a due time is django-tasks-db's "not deferred" (9999-01-01).
NOT_DEFERRED = 1e11
#: Re-listening after a loss: the claims back off to 10 s, but one connection attempt every
#: 2 s costs nothing, and once listening again every thread is woken to claim at once.
FIRST_RETRY, MAX_RETRY = 0.5, 2.0
LONGEST_SLEEP = 60.0  # the listener looks at its doorbell file this often when nothing rings
TIMERS = 256  # due times kept; more are found again by asking the database for the next
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


@dataclass(frozen=True)
class Ready:
    """What a ring says: a task of ``backend``/``queue`` is ready at ``at`` (epoch seconds;
    None for now). The trigger of migration 0002 writes the same JSON."""

    backend: str
    queue: str
    at: float | None

    def encode(self) -> bytes:
        return json.dumps({"b": self.backend, "q": self.queue, "at": self.at}).encode()

    @classmethod
    def parse(cls, text: str | bytes) -> Ready | None:
        """Anyone of this user can ring a doorbell: anything unexpected is no ring."""
        try:
            data = json.loads(text)
            backend, queue, at = data["b"], data["q"], data["at"]
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(backend, str) or not isinstance(queue, str):
            return None
        if not isinstance(at, int | float) or isinstance(at, bool) or at >= NOT_DEFERRED:
            at = None
        return cls(backend, queue, at)


def ready_for(backend: str, queue: str, run_after: datetime | None) -> Ready:
    return Ready(backend, queue, None if run_after is None else run_after.timestamp())


class Unavailable(Exception):
    """Push cannot work for this process at all (no trigger, no psycopg 3): it polls."""


class Source(Protocol):
    mode: str

    def open(self) -> str:
        """Start listening; what is listened to, in words. Raises on failure."""

    def rings(self, timeout: float) -> Iterator[str | bytes]:
        """The rings that arrived together, waiting for them up to ``timeout`` seconds.
        Raises when lost."""

    def close(self) -> None: ...


class Notify:
    """PostgreSQL's LISTEN, on a connection of its own (Django's are per thread and busy)."""

    mode = NOTIFY

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.conn: Any = None

    def open(self) -> str:
        from django.db import connections
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        if not is_psycopg3:
            raise Unavailable("notify needs psycopg 3 (pip install psycopg)")
        import psycopg

        params = connections[self.alias].get_connection_params()
        # A listener only reads: a network path that died silently (a NAT's idle timeout)
        # would leave it deaf but sure of itself. TCP keepalives find that out within a
        # minute, unless OPTIONS chose otherwise.
        for name, value in KEEPALIVES.items():
            params.setdefault(name, value)
        self.conn = psycopg.connect(**params, autocommit=True)
        found = self.conn.execute(
            "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = to_regclass(%s)",
            [TRIGGER, TABLE],
        ).fetchone()
        if found is None:
            self.close()
            raise Unavailable(
                'no notify trigger on the task table: add "backends.taskworker" to '
                "INSTALLED_APPS and run manage.py migrate"
            )
        self.conn.execute(f"LISTEN {CHANNEL}")
        return f"LISTEN {CHANNEL}"

    def rings(self, timeout: float) -> Iterator[str]:
        # Back after the first packet (all of its notifications), so a deferred task heard
        # now gets its timer set before the next wait.
        for notification in self.conn.notifies(timeout=timeout, stop_after=1):
            yield notification.payload

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class Doorbell:
    """SQLite: this process's doorbell socket (see `backends.taskworker.doorbell`)."""

    mode = DOORBELL

    def __init__(self, database: str) -> None:
        self.database = database
        self.sock: socket.socket | None = None
        self.path = ""

    def open(self) -> str:
        try:
            self.sock = doorbell.bind(self.database)
        except OSError as e:
            raise Unavailable(f"no doorbell: {flat(e)}") from None
        self.path = self.sock.getsockname()
        return self.path

    def rings(self, timeout: float) -> Iterator[bytes]:
        assert self.sock is not None
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            if not os.path.exists(self.path):
                raise OSError(f"its socket {self.path} was removed")
            return
        while True:
            try:
                yield self.sock.recv(doorbell.LARGEST)
            except BlockingIOError:
                return

    def close(self) -> None:
        if self.sock is not None:
            doorbell.unbind(self.sock)
            self.sock = None


class Wakeup(threading.Thread):
    """The listener thread of one worker process (see the module's docstring)."""

    def __init__(
        self,
        options: argparse.Namespace,
        label: str,
        ring: Callable[[], None],
        rearm: Callable[[], None],
    ) -> None:
        super().__init__(name=label, daemon=True)
        self.options = options
        self.ring = ring  # wake one idle thread
        self.rearm = rearm  # the poll interval changed: idle threads wait anew
        self.mode = POLLING
        self.stopped = False
        self.source: Source | None = None
        self.due: list[float] = []  # heap of deferred tasks' due times (epoch seconds)
        queues = options.queue_name.split(",")
        self.all_queues = "*" in queues
        self.queues = frozenset(queues)
        self.excluded = frozenset(q for q in options.exclude_queues.split(",") if q)

    def interval(self) -> float:
        """How long the idle process waits between polls now."""
        if self.mode == POLLING:
            return float(self.options.interval)
        return max(float(self.options.interval), float(self.options.safety_interval))

    def stop(self) -> None:
        self.stopped = True
        if self.source is not None:
            self.source.close()

    def run(self) -> None:
        try:
            self.source = self._source()
        except Unavailable as e:
            self._say(POLLING, f"{e}; every {self.options.interval:g} s")
            return
        backoff = Backoff(FIRST_RETRY, MAX_RETRY)
        lost = False
        while not self.stopped:
            try:
                detail = self.source.open()
                self._catch_up()
            except Unavailable as e:
                self._say(POLLING, f"{e}; every {self.options.interval:g} s")
                return
            except Exception as e:  # an outage: the claims wait it out, this re-listens
                self.source.close()
                delay = backoff.next()
                if not lost:
                    lost = True
                    # A full server is said by the threads, once a minute (worker.Refusals).
                    why = "no connection slot free" if dbslots.refused(str(e)) else flat(e)
                    self._say(POLLING, f"{self.source.mode} unavailable: {why}; retrying")
                time.sleep(delay)
                continue
            backoff.reset()
            lost = False
            safety = max(self.options.interval, self.options.safety_interval)
            self._say(self.source.mode, f"{detail}; safety poll every {safety:g} s")
            try:
                self._listen()
            except Exception as e:
                if self.stopped:
                    return
                self.source.close()
                lost = True
                self._say(POLLING, f"{self.source.mode} lost: {flat(e)}; re-listening")

    def _source(self) -> Source:
        from django.db import connections, router
        from django_tasks_db.models import DBTaskResult

        if self.options.wake == "poll":
            raise Unavailable("--wake=poll")
        alias = router.db_for_write(DBTaskResult)
        connection = connections[alias]
        if connection.vendor == "postgresql":
            return Notify(alias)
        if connection.vendor == "sqlite":
            return Doorbell(str(connection.settings_dict["NAME"]))
        raise Unavailable(f"no push wake-up on {connection.vendor}")

    def _listen(self) -> None:
        assert self.source is not None
        while not self.stopped:
            for text in self.source.rings(self._until_due()):
                ready = Ready.parse(text)
                if ready is not None and self._serves(ready):
                    self._heard(ready)
            self._fire()

    def _until_due(self) -> float:
        if not self.due:
            return LONGEST_SLEEP
        return min(LONGEST_SLEEP, max(0.0, self.due[0] - time.time()))

    def _heard(self, ready: Ready) -> None:
        if ready.at is None or ready.at <= time.time():
            self.ring()
        else:
            self._remember(ready.at)

    def _remember(self, at: float) -> None:
        if at in self.due:
            return
        heapq.heappush(self.due, at)
        if len(self.due) > TIMERS:  # the latest are asked for again when the earlier fire
            self.due = heapq.nsmallest(TIMERS // 2, self.due)

    def _fire(self) -> None:
        fired = False
        while self.due and self.due[0] <= time.time():
            heapq.heappop(self.due)
            fired = True
        if fired:
            self.ring()
            self._next_due()

    def _catch_up(self) -> None:
        """Listening (again): whatever became ready meanwhile rang nobody. One ring claims it
        (the finder wakes the next), and the next deferred task gets its timer."""
        self.ring()
        self._next_due()

    def _next_due(self) -> None:
        from django.db import connections
        from django.db.models import Min
        from django.utils import timezone
        from django_tasks_db.compat import TaskResultStatus
        from django_tasks_db.models import DBTaskResult, get_date_max

        tasks = DBTaskResult.objects.filter(
            status=TaskResultStatus.READY,
            backend_name=self.options.backend_name,
            run_after__gt=timezone.now(),
            run_after__lt=get_date_max(),
        )
        if not self.all_queues:
            tasks = tasks.filter(queue_name__in=self.queues)
        if self.excluded:
            tasks = tasks.exclude(queue_name__in=self.excluded)
        try:
            first = tasks.aggregate(first=Min("run_after"))["first"]
        finally:
            connections.close_all()  # this thread's: it asks rarely, a slot is worth more
        if first is not None:
            self._remember(first.timestamp())

    def _serves(self, ready: Ready) -> bool:
        if ready.backend != self.options.backend_name or ready.queue in self.excluded:
            return False
        return self.all_queues or ready.queue in self.queues

    def _say(self, mode: str, detail: str) -> None:
        """Said at any verbosity (the console reads it), through the log's handler so that it
        is never interleaved with another thread's line. A new mode changes the poll interval."""
        changed = mode != self.mode
        self.mode = mode
        said = wakeup_line.line(self.name, mode, detail)
        record = log.makeRecord(log.name, logging.WARNING, __file__, 0, "%s", (), None)
        record.threadName, record.msg = self.name, said.removeprefix(f"{self.name} ")
        log.handle(record)
        if changed:
            self.rearm()
