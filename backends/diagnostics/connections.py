"""Database connections the entries may hold at once, against the slots the server has.

Every thread of every process that runs Django may hold a connection: a task worker's
threads hold theirs for good (persistent connections, see ``backends.taskworker.setup``), a web
server's for a request (for longer with CONN_MAX_AGE), the console's statistics poll one while
it reads. A 4 x 8 worker on a server with ``max_connections = 15`` had 15 threads hold every
slot, 17 retry for ever, and an administrator's psql locked out; the only advice shown was
"check that the server is running". This says the arithmetic instead: at setup (``--check``)
when the server answers, and at run time when a process says the server refused it.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends import dbslots
from backends.base import Backend, plural
from backends.diagnostics.finding import EntryLike, Finding

CONSOLE = 1  # the console's statistics poll: one connection while it reads


def demand(entries: Sequence[EntryLike]) -> tuple[int, list[str]]:
    """(connections the entries may hold at once, what each adds: ``worker 4 processes x 8
    threads + 4 listeners = 36``). The console counts when it polls task statistics (a task
    worker runs)."""
    total, parts = 0, []
    for entry in entries:
        backend = entry.backend
        count = _held(backend) if backend is not None else 0
        if count:
            total += count
            parts.append(f"{entry.name} {_shape(backend)}" if backend else entry.name)
    if any(e.backend is not None and e.backend.kind == "tasks" for e in entries):
        total += CONSOLE
        parts.append(f"the console {CONSOLE}")
    return total, parts


def check_connections(entries: Sequence[EntryLike], using: str = "default") -> list[Finding]:
    """At setup: more connections than the server gives an ordinary role. Reads the server
    (``SHOW``-like settings and pg_stat_activity); silent when it is not PostgreSQL or does not
    answer (the migration check says why)."""
    from django.db import DatabaseError, connections

    try:
        slots = dbslots.read(connections[using])
    except DatabaseError:
        return []
    total, parts = demand(entries)
    if slots is None or total <= slots.ordinary:
        return []
    what = (
        f"the entries may hold {total} database connections at once ({', '.join(parts)}), "
        f"but PostgreSQL gives a role {slots.limit()}, so {total - slots.ordinary} "
        'of them are refused with "too many clients"'
    )
    return [Finding("warning", "db-connections", None, what, advice(entries, slots))]


def refused(entries: Sequence[EntryLike], entry: str, using: str = "default") -> Finding:
    """At run time: ``entry`` said the server refused a connection for want of slots."""
    slots = dbslots.known(using)
    total, parts = demand(entries)
    limit = (
        f"PostgreSQL gives a role {slots.limit()}"
        if slots is not None
        else "the server's max_connections could not be read (it refused us too)"
    )
    what = (
        f'the database refused {entry} connections ("too many clients"): the entries may '
        f"hold {total} at once ({', '.join(parts)}) and {limit}"
    )
    return Finding("warning", "db-refused", entry, what, advice(entries, slots))


def advice(entries: Sequence[EntryLike], slots: dbslots.Slots | None) -> str:
    others = sum(
        e.backend.db_connections() if e.backend.kind != "tasks" else e.backend.db_listeners()
        for e in entries
        if e.backend is not None
    )
    room = ""
    if slots is not None:
        left = slots.ordinary - others - CONSOLE
        room = f" (processes x threads of all workers at most {left})" if left > 0 else ""
    fix = (
        f"give task workers fewer threads{room}, put PgBouncer in transaction mode between "
        "Django and PostgreSQL, or raise max_connections; with CONN_MAX_AGE = 0 web threads "
        "hold a connection only during a request"
    )
    if slots is None:
        fix += (
            "; a project that connects as a superuser also takes the slots reserved for an "
            "administrator's psql: connect as a role without SUPERUSER"
        )
    elif slots.superuser:
        fix += (
            f'; the project connects as "{slots.user}", a superuser, so it also takes the '
            f"{plural(slots.reserved, 'slot')} reserved for an administrator's psql: connect "
            "as a role without SUPERUSER"
        )
    return fix


def _shape(backend: Backend) -> str:
    """``4 processes x 8 threads = 32``, ``2 workers``: how its knobs multiply."""
    factors = [_factor(name, value) for name, value in backend.scale.items()]
    listeners = backend.db_listeners()
    if len(factors) < 2 and not listeners:
        return factors[0] if factors else "1"
    plus = f" + {plural(listeners, 'listener')}" if listeners else ""
    return f"{' x '.join(factors)}{plus} = {_held(backend)}"


def _held(backend: Backend) -> int:
    return backend.db_connections() + backend.db_listeners() if backend.runs_django else 0


def _factor(knob: str, value: int) -> str:
    """``8 threads``, ``1 process``, ``concurrency 4``."""
    if not knob.endswith("s"):
        return f"{knob} {value}"
    if value == 1:
        knob = knob[:-2] if knob.endswith("sses") else knob[:-1]
    return f"{value} {knob}"
