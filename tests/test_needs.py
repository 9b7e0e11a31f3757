"""A test that needs a missing service is skipped on a laptop and fails in CI, naming it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import free_port
from needs import CI

TESTS = Path(__file__).resolve().parent

NEEDY = """
import os

from needs import needs, nothing_on, require

PORT = int(os.environ["BOGUS_REDIS_PORT"])


@needs("Redis", lambda: nothing_on("127.0.0.1", PORT))
def test_marked():
    pass


def test_required_in_its_body():
    require("initdb", "initdb / pg_ctl are not on PATH")


def test_needing_nothing():
    pass
"""


def run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on a generated test file, with this suite's plugin and a port nothing listens on."""
    (tmp_path / "test_needy.py").write_text(NEEDY)
    environ = {k: v for k, v in os.environ.items() if k != CI}
    environ.update(PYTHONPATH=str(TESTS), BOGUS_REDIS_PORT=str(free_port()), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "needs", "-p", "no:cacheprovider", "-rs", "-q"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_services_are_listed_skips_on_a_laptop(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout
    assert re.search(r"SKIPPED .*needs Redis: nothing answers on 127\.0\.0\.1:\d+", done.stdout)
    assert "needs initdb: initdb / pg_ctl are not on PATH" in done.stdout


def test_missing_services_fail_in_ci_naming_them(tmp_path: Path) -> None:
    done = run(tmp_path, **{CI: "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "skipped" not in done.stdout
    assert re.search(
        rf"Redis is missing in CI \({CI} is set\): nothing answers on 127\.0\.0\.1:\d+",
        done.stdout,
    )
    assert f"initdb is missing in CI ({CI} is set): initdb / pg_ctl are not on PATH" in done.stdout
    assert "1 passed" in done.stdout


def test_every_skip_in_the_suite_goes_through_needs() -> None:
    """A skip written any other way would stay a silent skip in CI."""
    skipping = re.compile(r"pytest\.skip\(|skipif|importorskip|mark\.skip\b|\.xfail\(")
    found = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name not in ("needs.py", "test_needs.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if skipping.search(line)
    ]
    assert found == []
