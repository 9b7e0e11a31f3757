"""A scratch PostgreSQL cluster of the tests' own (initdb in a temporary folder, its own port):
for faults and settings the machine's shared server must never see."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from helpers import free_port
from needs import require


class Cluster:
    """A scratch PostgreSQL cluster in a temporary folder, on its own port, as user postgres.

    ``stop`` is the fault: ``immediate`` kills the server the way a crash or an OOM kill does
    (clients see their connections drop, uncommitted work is lost); ``start`` brings it back on
    the same port and data.
    """

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port or free_port()

    def run(self, *argv: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*as_postgres, *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed: {(done.stdout + done.stderr).strip()}")

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "server.log")
        self.run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def execute(self, sql: str, *params: object, dbname: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as conn:
            conn.execute(sql, params)  # type: ignore[arg-type]


@contextlib.contextmanager
def private_cluster(prefix: str, conf: str = "") -> Iterator[Cluster]:
    """A running cluster with ``conf`` appended to its postgresql.conf, removed afterwards; in
    CI a machine that cannot make one fails the test, elsewhere it is skipped saying why."""
    for program in ("initdb", "pg_ctl", "psql"):
        if not shutil.which(program):
            require("initdb", f"{program} is not on PATH: no private PostgreSQL cluster")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        require("runuser", "running as root without runuser: initdb refuses root")
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(root)
    try:
        cluster.init()
        with (cluster.data / "postgresql.conf").open("a") as settings:
            settings.write(conf)
        cluster.start()
    except (RuntimeError, LookupError) as e:  # LookupError: no user postgres
        shutil.rmtree(root, ignore_errors=True)
        require("initdb", f"cannot start a private PostgreSQL cluster here: {e}")
    try:
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # a test that failed mid-outage left it stopped
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
