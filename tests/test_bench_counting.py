"""The statement counter of bench/taskproject.py, on which bench/latency.py's idle rows rest.

Every worker is judged by the same count, so it must count each statement once: Django keeps a
connection's ``execute_wrappers`` across a reconnect (db_worker at ``CONN_MAX_AGE=0`` reconnects
for every poll), and a wrapper added again on each one would count that worker double.
"""

from __future__ import annotations

import subprocess
import sys

from bench.taskproject import APPS, sqlite_database, statement_counts, write_project

STATEMENTS = """\
import django

django.setup()

from django.db import connection

for n in range(5):
    if n == 3:
        connection.close()  # the next statement reconnects
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s", [n])
"""


def test_each_statement_counted_once_across_a_reconnect(tmp_path):
    write_project(tmp_path, {"statements.py": STATEMENTS})
    database = sqlite_database(tmp_path, (0,), [*APPS, "benchcount"])
    counts = tmp_path / "counts"
    counts.mkdir()
    subprocess.run(
        [sys.executable, "statements.py"],
        cwd=tmp_path,
        env=database.env(0, BENCH_COUNT_DIR=str(counts)),
        check=True,
        timeout=60,
    )
    assert statement_counts(counts) == (5, 5)
