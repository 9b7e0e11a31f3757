"""Which database a process uses: vendor, host, port and name, never a password or a DSN.

On a real project gunicorn loaded ``.env`` (``DATABASE_URL``: PostgreSQL) while the task
worker and the console's statistics used the SQLite fallback: 77 tasks sat READY, the header
said ``ready 0`` and nothing noticed. So every task worker says at start which database it
uses, in one line of its output (`report_line`), and the console compares that with the
database its statistics read (`parse`, `Database.same`). Both sides import this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

MARK = "prodserver-tui: database "  # a worker's report: this, then a JSON object
LONGEST = 4096  # a report is short; a longer line is someone else's
_FIELD = 300  # each field at most this long in a report read back
# Engines named after their last dotted part, grouped by the server they talk to.
_VENDORS = {
    "postgresql_psycopg2": "postgresql",
    "postgis": "postgresql",
    "spatialite": "sqlite",
    "sqlite3": "sqlite",
}
_DEFAULT_PORTS = {"postgresql": "5432", "mysql": "3306", "oracle": "1521"}
# A server on this machine, however it is reached (an empty HOST is PostgreSQL's Unix socket).
_LOCAL = frozenset({"", "localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Database:
    """Where one alias of DATABASES points; comparable across processes (`same`)."""

    alias: str
    vendor: str
    host: str
    port: str
    name: str

    def shown(self) -> str:
        """``postgresql "shop" on 127.0.0.1:5432``, ``sqlite /srv/db.sqlite3``."""
        if self.vendor == "none":
            return f'no database (DATABASES["{self.alias}"] names no ENGINE)'
        if self.private:
            return "an in-memory sqlite database (each process has its own)"
        if self.vendor == "sqlite":
            return f"sqlite {self.name}"
        host = self.host or "the local socket"
        return f'{self.vendor} "{self.name}" on {host}:{self.port}'

    @property
    def private(self) -> bool:
        """An in-memory SQLite database exists inside one process: no other shares it."""
        return self.vendor == "sqlite" and (
            self.name in ("", ":memory:") or "mode=memory" in self.name
        )

    def same(self, other: Database) -> bool:
        """The same database, however each process spelled it: the host ``localhost``,
        ``127.0.0.1`` or the local socket, the default port or none, a path or its real path."""
        if self.private or other.private:
            return False
        if (self.vendor, self.name) != (other.vendor, other.name):
            return False
        if self.vendor == "sqlite":
            return True
        local = self.host.lower() in _LOCAL or self.host.startswith("/")
        other_local = other.host.lower() in _LOCAL or other.host.startswith("/")
        hosts_match = (local and other_local) or self.host.lower() == other.host.lower()
        return hosts_match and self.port == other.port


def describe(params: Mapping[str, Any], alias: str = "default") -> Database:
    """A DATABASES entry as `Database`: only ENGINE, HOST, PORT and NAME are read, so no
    password can reach a report. SQLite paths are made absolute (the real path) in the
    process that describes them, whose folder is the one it opens them from."""
    engine = str(params.get("ENGINE") or "")
    vendor = engine.rpartition(".")[2]
    vendor = _VENDORS.get(vendor, vendor) or "none"
    name = str(params.get("NAME") or "")
    # user:password@host in HOST would be a mistake, but a report must never carry one.
    host = str(params.get("HOST") or "").rpartition("@")[2]
    port = str(params.get("PORT") or "") or _DEFAULT_PORTS.get(vendor, "")
    if vendor == "sqlite" and name and name != ":memory:" and not name.startswith("file:"):
        name = os.path.realpath(name)
    return Database(alias=alias, vendor=vendor, host=host, port=port, name=name)


def report_line(database: Database, pid: int) -> str:
    """What a worker prints at start; ``pid`` is its main process's, so that a task printing
    such a line in a worker process cannot speak for the entry."""
    return MARK + json.dumps({"pid": pid, **asdict(database)}, ensure_ascii=True)


def parse(line: str, pid: int | None) -> Database | None:
    """A report from the entry whose main process is ``pid``; None for any other line.

    Child output is untrusted: a line too long, not JSON, with fields of the wrong type or
    from another pid is not a report. Fields are cut to a few hundred characters.
    """
    line = line.strip()
    if not line.startswith(MARK) or len(line) > LONGEST or pid is None:
        return None
    try:
        fields = json.loads(line[len(MARK) :])
    except ValueError:
        return None
    if not isinstance(fields, dict) or fields.get("pid") != pid:
        return None
    values = [fields.get(key) for key in ("alias", "vendor", "host", "port", "name")]
    if not all(isinstance(v, str) for v in values):
        return None
    return Database(*(str(v)[:_FIELD] for v in values))
