"""One worker thread: django-tasks-db's claim and run, in a loop that can wait politely.

Running a task is django-tasks-db's ``Worker.run_task``. The claim and the result's save
take the task django-tasks-db would and write what it writes, each in one statement on SQLite
and PostgreSQL (`claims`: they cost a third of the CPU and, on PostgreSQL, three round trips a
task instead of five); on other databases the claim is its own queryset, ``get_locked`` and
``claim``. The loop around them is ours, for three reasons. Waiting: ``Worker.run`` sleeps
with ``time.sleep``, so a retired or draining thread could not leave before its interval ran
out. Idle cost: with every thread polling every interval, 2 x 8 threads cost 3 % of a core
on an empty queue; here idle threads of a process take turns (a process polls about once per
interval whatever its thread count), and a thread that finds work wakes an idle one, so a
burst still fills every thread within a few polls. Outages: see `TaskLoop`. Connection
slots: an idle thread holds a PostgreSQL connection for nothing, so while the server is
crowded it gives it back (see `TaskLoop.give_back`), and a server that has no slot left is
said once a minute per process, not once per attempt of every thread (`Refusals`).
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    router,
)
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction

from backends import dbslots
from backends.backoff import Backoff as Delays
from backends.base import flat, plural
from backends.taskworker import claims
from backends.taskworker.recovery import release_claims
from backends.taskworker.setup import log

_SQLITE_WRITES = threading.Lock()  # one claim or save at a time per process on SQLite

if TYPE_CHECKING:
    from collections.abc import Callable

#: What an unreachable, restarting or locked database raises (psycopg's "connection refused"
#: and "server closed the connection", SQLite's "database is locked"; Django raises
#: InterfaceError for a connection it already knows is closed). Other database errors are about
#: the data (a return value the column cannot store) and fail the task, as in django-tasks-db.
OUTAGE = (OperationalError, InterfaceError)
FIRST_RETRY = 0.5  # seconds; doubled after every failed attempt ...
MAX_RETRY = 10.0  # ... up to this, so a thread notices a returned database within 10 s
REFUSALS_EVERY = 60.0  # seconds: refused connections are said at most this often per process


class Backoff:
    """Waits between attempts while the database is unavailable: one log line per attempt
    (a full server excepted, see below).

    A thread's first failed attempt waits FIRST_RETRY, each further one twice as long, up to
    MAX_RETRY, with a little jitter so the threads of a pool do not knock all at once. A server
    that refuses for want of connection slots is up, just full: that is said by `Refusals`,
    for the whole process, instead of by each thread.
    """

    def __init__(self) -> None:
        self.delays = Delays(FIRST_RETRY, MAX_RETRY)
        self.since: float | None = None  # time.monotonic() of the first failure, while down
        self.said = False  # this thread said "unavailable": it says "back" too

    def failed(self, exc: BaseException, doing: str) -> float:
        if self.since is None:
            self.since = time.monotonic()
            self.delays.reset()
            self.said = False
        delay = self.delays.next() * random.uniform(0.8, 1.2)
        if dbslots.refused(str(exc)):
            REFUSALS.refused(exc)
        else:
            self.said = True
            log.warning("database unavailable%s: %s; retrying in %.1f s", doing, reason(exc), delay)
        with contextlib.suppress(Exception):  # closing a dead connection may fail as well
            connections.close_all()  # this thread's: the next attempt reconnects
        return delay

    def recovered(self, doing: str = "") -> None:
        if self.since is not None and self.said:
            log.warning("database back after %.1f s%s", time.monotonic() - self.since, doing)
        self.since = None


class Refusals:
    """Connections the server refused for want of slots, said at most once a minute.

    With more threads than slots, the threads left out are refused again at every retry: 17
    threads each saying so every 10 s buried the rest of the pane. The first refusal is said at
    once (with the server's words, which the console recognises); later ones are counted into
    the next line.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.said_at: float | None = None

    def refused(self, exc: BaseException) -> None:
        with self.lock:
            self.count += 1
            now = time.monotonic()
            if self.said_at is not None and now - self.said_at < REFUSALS_EVERY:
                return
            count, self.count, self.said_at = self.count, 0, now
        log.warning(
            "database refused %s of this process: %s; they retry (backing off up to %.0f s) "
            "while idle threads give theirs back. Fewer threads in all (processes x threads) "
            "than max_connections, or PgBouncer, end this",
            plural(count, "connection"),
            reason(exc),
            MAX_RETRY,
        )


REFUSALS = Refusals()


def reason(exc: BaseException) -> str:
    """The error on one line: the pane shows a line per attempt, not a traceback."""
    return flat(exc) or type(exc).__name__


def raised(traceback: str) -> str:
    """The exception a formatted traceback ends with, on one line: ``ValueError: boom``.

    Its message may span lines (psycopg's do), so this is the whole unindented block after the
    last frame, not the last line; the class loses its module path, which the row keeps.
    """
    block: list[str] = []
    for line in reversed(traceback.rstrip().splitlines()):
        if line.startswith(" ") or line.startswith("Traceback"):
            break
        block.insert(0, line)
    name, colon, message = flat("\n".join(block)).partition(": ")
    return name.rpartition(".")[2] + colon + message


def storable(text: str | None) -> str | None:
    """Text every database takes. An exception may quote undecodable bytes as lone surrogates,
    which no database driver encodes, or hold NUL, which PostgreSQL refuses: its failure could
    not be saved, the thread crashed and the task stayed RUNNING. Both are written as escapes."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


class TaskLoop(Worker):
    """django-tasks-db's worker loop, made to live through database outages.

    The rule, for a database that stops, restarts or stays locked while tasks run:

    * Claiming: an outage error is one log line, then the thread waits (FIRST_RETRY doubling
      to MAX_RETRY) and tries again; it never crashes or restarts. A claim whose commit was cut
      off may or may not have been written, so after an outage the thread puts back to READY
      any task still RUNNING under its own worker id: it never started it (a task runs only
      after its claim committed), so this runs nothing twice.
    * Finishing: a task that ran keeps its outcome in memory, and the worker retries saving
      it, with the same backoff, until the database takes it. An outage while saving never
      turns a success into a failure and never re-runs the task, so the row ends SUCCESSFUL or
      FAILED exactly once with the real ``finished_at``. A task whose own code met the outage
      (its query raised) did fail, as it would have for any caller: it is saved FAILED with that
      error, since nobody knows whether running it again is safe. The outcome is saved only to
      a row still RUNNING under this thread's claim (`_store`). A draining process also keeps
      trying: SIGTERM waits for the save. Only if the process is killed before the save (the
      master's ``--drain-timeout``, SIGKILL) does the row stay RUNNING under a dead pid; the
      master then recovers it by its ``--on-crash`` rule (requeue: the task runs again), once
      the database answers.
    * Draining: a claim is made only if the pool admits it (``admit``), asked with the row in
      hand: written by the claim's UPDATE but not committed (locked, on other databases), right
      before the commit; refused, the transaction rolls back, so nobody ever saw the row other
      than READY, and the thread leaves. So no thread of a draining process claims, even one
      that was waiting for the database when the drain began. (A claim in one autocommit
      statement would save a round trip, but could only ask before the statement, while the
      drain may begin during it: that claim would be made after the drain's line.)
    """

    def __init__(
        self,
        *,
        idle_wait: Callable[[TaskLoop], None],
        found: Callable[[], None],
        admit: Callable[[TaskLoop], bool],
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.idle_wait = idle_wait  # the pool decides how long an idle thread waits,
        self.found = found  # whom to wake when there is work,
        self.admit = admit  # and whether a claim may still be made (not once draining)
        self.busy = False  # a claim admitted, its task not finished: a drain counts it
        self.wake = threading.Event()
        self._statements: tuple[str, claims.Statements | None] | None = None

    def stop(self) -> None:
        """Leave after the current task, or now if waiting."""
        self.running = False
        self.wake.set()

    def run(self) -> None:
        log.debug("started, queues %s", ",".join(self.queue_names))
        if self.startup_delay and self.interval:
            self.wake.wait(random.random())
        backoff = Backoff()
        ran = False  # the last iteration ran a task, whose save just used the connection
        while self.running:
            try:
                close_old_connections()  # drop a connection the database closed meanwhile
                if ran:
                    self.skip_health_check()
                ran = False
                if backoff.since is not None:
                    self.release_own_claims()
                task = self.claim()
            except OUTAGE as e:
                self.wake.wait(backoff.failed(e, ""))
                self.wake.clear()
                continue
            backoff.recovered()
            if task is not None:
                self.found()
                self.run_task(task)
                ran = True
                if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                    log.info("ran %s (max_tasks): recycling", plural(self._run_tasks, "task"))
                    return
            elif not self.running:  # the claim was refused: the process is draining
                return
            elif self.batch:
                log.info("no more tasks (batch): leaving")
                return
            else:
                self.give_back()
                self.idle_wait(self)

    def claim(self) -> DBTaskResult | None:
        """django-tasks-db's claim, as one statement on SQLite and PostgreSQL (`claims`). A
        locked SQLite raises like any outage (db_worker would call it "no task", so lock
        contention looked like an idle worker)."""
        alias = DBTaskResult.objects.db  # where django-tasks-db's queryset claims
        statements = self.statements(alias)
        try:
            with self.writing(alias):
                if statements is not None:
                    return statements.claim(self.worker_id, self._admitted)
                tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)  # type: ignore[attr-defined]
                if not self.process_all_queues:
                    tasks = tasks.filter(queue_name__in=self.queue_names)
                if self.excluded_queue_names:
                    tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
                with exclusive_transaction(alias):
                    task: DBTaskResult | None = tasks.get_locked()
                    if task is None or not self._admitted():
                        return None
                    task.claim(self.worker_id)
                    return task
        except BaseException:
            self.busy = False  # the claim did not happen, or an outage cut it off
            raise

    @staticmethod
    def writing(alias: str) -> contextlib.AbstractContextManager[object]:
        """A turn to write, on SQLite. It has one writer: threads of a process that raced for
        it got "database is locked" and backed off as from an outage, so one thread could take
        a whole burst; and a thread that lost the race sleeps in SQLite's busy handler (1, 2,
        5, 10 ms and up), however soon the lock is free. They take turns here instead, for
        claims and saves alike; other processes still meet SQLite's own lock."""
        if connections[alias].vendor == "sqlite":
            return _SQLITE_WRITES
        return contextlib.nullcontext()

    def _admitted(self) -> bool:
        """Asked only with the row in hand (locked, or written and not yet committed): a
        thread that waited here for a lock while the drain began must not claim. Refused, it
        leaves; its transaction rolls back and the row stays READY."""
        if self.admit(self):
            return True
        self.running = False
        return False

    def statements(self, alias: str) -> claims.Statements | None:
        """This loop's claim and save statements on ``alias``, made once."""
        if self._statements is None or self._statements[0] != alias:
            queues = None if self.process_all_queues else self.queue_names
            made = claims.for_connection(
                alias, self.backend_name, queues, self.excluded_queue_names
            )
            self._statements = (alias, made)
        return self._statements[1]

    def skip_health_check(self) -> None:
        """After a task: its save used the connection a moment ago, so the health check
        ``close_old_connections`` arms (CONN_HEALTH_CHECKS, on for every worker: see
        `setup.setup_django`) would be a ``SELECT 1`` round trip per task proving nothing.
        Its other checks (autocommit left off, errors, age) have run; an idle thread still
        checks before its next claim."""
        connection = connections[DBTaskResult.objects.db]
        if connection.connection is not None and not connection.errors_occurred:
            connection.health_check_done = True  # type: ignore[attr-defined]

    def give_back(self) -> None:
        """An idle thread needs no connection: while the server is crowded, close it.

        Held for good, one per thread, idle connections took every slot (PostgreSQL's
        superusers' too, when workers connect as one), so the threads left out retried for ever
        and nobody else got in, not even psql. Crowded means more than CROWDED of the slots an
        ordinary role may use are taken (a look at pg_stat_activity, on the connection the
        claim just used); otherwise the connection stays, as reconnecting costs a few ms per
        poll. The next claim reconnects.
        """
        connection = connections[router.db_for_write(DBTaskResult)]
        if connection.vendor != "postgresql" or connection.connection is None:
            return
        try:
            slots = dbslots.read(connection)
        except DatabaseError:  # the next claim meets the outage and waits it out
            return
        if slots is not None and slots.crowded:
            with contextlib.suppress(Exception):
                connection.close()

    def release_own_claims(self) -> None:
        """After an outage: a claim cut off at commit may have been written; undo it."""
        released = release_claims(self.worker_id, router.db_for_write(DBTaskResult))
        if released:
            log.warning("requeued %s whose claim the outage cut off", plural(released, "task"))

    def run_task(self, db_task_result: DBTaskResult) -> None:
        # django-tasks-db saves the outcome with these two; on this row they wait out an outage,
        # and their save writes only to a row that is still this thread's claim.
        for setter in ("set_successful", "set_failed"):
            saving = self._until_saved(db_task_result, getattr(db_task_result, setter))
            setattr(db_task_result, setter, saving)
        store = functools.partial(self._store, db_task_result)
        db_task_result.save = store  # type: ignore[method-assign,assignment]
        started = time.monotonic()
        log.debug("start %s %s", db_task_result.task_path, db_task_result.id)
        try:
            super().run_task(db_task_result)
        finally:
            self.busy = False
        # Duration first and the id last: in a narrow pane the id is what gets cut off. Both
        # lines are formatted only at a verbosity that shows them (the "done" line costs about
        # 7 us at the default one: bench/taskcost.py's per-task cost is a millisecond).
        took = time.monotonic() - started
        path = db_task_result.task_path
        if db_task_result.status == "FAILED":
            error = raised(db_task_result.traceback) or db_task_result.exception_class_path
            log.error("FAILED %.2fs %s: %s (%s)", took, path, error, db_task_result.id)
            log.debug("%s", db_task_result.traceback.rstrip())
        else:
            log.info("done %.2fs %s %s", took, path, db_task_result.id)

    def _store(self, row: DBTaskResult, **_: object) -> bool:
        """Save the outcome only if the row is still the claim this thread ran: RUNNING, its
        worker ids as the claim left them (this thread's last). Whether it was saved.

        A row requeued meanwhile (recovery took this worker for dead, or someone did by hand)
        belongs to whoever claims it next: writing over it would finish a task that is due to
        run, or overwrite another worker's run. One conditional UPDATE, so nothing can change
        the row between the check and the write.
        """
        for field in ("traceback", "exception_class_path"):
            setattr(row, field, storable(getattr(row, field)))
        alias = row._state.db or DBTaskResult.objects.db
        statements = self.statements(alias)
        with self.writing(alias):
            if statements is not None:
                changed = statements.save(row)
            else:
                changed = bool(
                    DBTaskResult.objects.using(alias)
                    .filter(id=row.id, status=TaskResultStatus.RUNNING, worker_ids=row.worker_ids)
                    .update(**{field: getattr(row, field) for field in claims.RESULT_FIELDS})
                )
        if not changed:
            log.warning(
                "result of task %s not saved: the task was requeued or changed by someone "
                "else while it ran",
                row.id,
            )
        return changed

    def _until_saved(self, row: DBTaskResult, setter: Callable[..., None]) -> Callable[..., None]:
        """``setter`` (which fills in the outcome, then saves), saving again until it sticks.

        Only the save is repeated: the fields, ``finished_at`` included, keep the values the
        first call gave them.
        """

        def save(*args: Any) -> None:
            backoff = Backoff()
            try:
                setter(*args)
                return
            except OUTAGE as e:
                delay = backoff.failed(e, f" saving the result of task {row.id}")
            while True:
                time.sleep(delay)
                try:
                    saved = self._store(row)
                except OUTAGE as e:
                    delay = backoff.failed(e, f" saving the result of task {row.id}")
                else:
                    backoff.recovered(f": saved the result of task {row.id}" if saved else "")
                    return

        return save
