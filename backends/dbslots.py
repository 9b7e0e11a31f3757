"""The connection slots of a PostgreSQL server: how many there are, how many are taken.

A server refuses the connection after its ``max_connections``-th ("sorry, too many clients
already"); ordinary roles are refused ``superuser_reserved_connections`` (and, from
PostgreSQL 16, ``reserved_connections``) earlier, so that an administrator can still get in.
A superuser role takes those reserved slots too: workers that connect as ``postgres`` can lock
out every ``psql``. The task worker reads this to give idle connections back while the server
is crowded; the diagnostics read it to say the arithmetic.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

from backends.base import one_line

#: More than this share of the slots ordinary roles may use taken: the server is crowded.
CROWDED = 0.8

#: What a server says when it has no slot left for the role (PostgreSQL, PostgreSQL's for
#: ordinary roles, MySQL), as it writes it: matched case and all, as this scans every line
#: of output the console reads.
REFUSALS = (
    "too many clients",
    "remaining connection slots are reserved",
    "Too many connections",
)

_QUERY = """
select current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       coalesce(current_setting('reserved_connections', true), '0')::int,
       current_setting('is_superuser') = 'on',
       current_user,
       (select count(*) from pg_stat_activity where backend_type = 'client backend')
"""


@dataclass(frozen=True)
class Slots:
    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections
    superuser: bool  # the role connected can take the reserved slots too
    user: str
    in_use: int  # client connections now, ours included

    @property
    def ordinary(self) -> int:
        """Slots a role without SUPERUSER may take."""
        return max(0, self.max_connections - self.reserved)

    @property
    def crowded(self) -> bool:
        return self.in_use > CROWDED * self.ordinary

    def limit(self) -> str:
        """``12 (max_connections 15 - 3 reserved for superusers)``."""
        if not self.reserved:
            return f"{self.ordinary} (max_connections)"
        return (
            f"{self.ordinary} (max_connections {self.max_connections} - {self.reserved} "
            "reserved for superusers)"
        )


def refused(text: str) -> bool:
    """Whether an error (or a batch of log lines) says the server had no free slot."""
    return any(marker in text for marker in REFUSALS)


_lock = threading.Lock()
_last: dict[str, Slots] = {}  # alias -> the last slots read, for when the server refuses us


def read(connection: Any) -> Slots | None:
    """The slots of the server behind a Django connection; None unless it is PostgreSQL.

    Database errors propagate: the caller knows whether it can wait (a worker) or must say so.
    """
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_QUERY)
        top, su_reserved, reserved, superuser, user, in_use = cursor.fetchone()
    # A role name is any string (a quoted identifier may hold escapes): shown, it is escaped.
    name = one_line(str(user), 64)
    slots = Slots(int(top), int(su_reserved) + int(reserved), bool(superuser), name, int(in_use))
    with _lock:
        _last[connection.alias] = slots
    return slots


def known(using: str = "default") -> Slots | None:
    """The slots now if the server answers, else the last ones read (None if never)."""
    from django.db import DatabaseError, connections

    with contextlib.suppress(DatabaseError):
        return read(connections[using])
    with _lock:
        return _last.get(using)
