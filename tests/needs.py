"""Tests that need something the machine may lack (PostgreSQL, Redis, tmux, initdb, a server
package) say so in one way, here: on a laptop such a test is skipped with the reason (``-rs``
lists it); in CI, where ``PRODSERVER_TUI_CI=1`` (set by ``.ci/run``) promises that everything is
installed and started, it fails naming what is missing, so no test stops running unnoticed.

``needs(service, check)`` marks a test, a module (``pytestmark``) or a parameter; ``check``
says why the service is missing, or None, and runs once, when the first test that needs it is
set up. Fixtures call ``require(service, why)``. This module is also the pytest plugin that
applies the marks (tests/conftest.py loads it; ``-p needs`` loads it anywhere else).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable

import pytest

CI = "PRODSERVER_TUI_CI"
Check = Callable[[], str | None]


def needs(service: str, check: Check) -> pytest.MarkDecorator:
    return pytest.mark.needs(service, check)


def require(service: str, missing: str | None) -> None:
    """Go on when nothing is missing; else skip, or fail in CI, naming the service."""
    if missing is None:
        return
    if os.environ.get(CI, "") not in ("", "0"):
        pytest.fail(f"{service} is missing in CI ({CI} is set): {missing}", pytrace=False)
    pytest.skip(f"needs {service}: {missing}")


def nothing_on(host: str, port: int) -> str | None:
    """Why a TCP service is missing (nothing accepts on host:port), or None."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        return f"nothing answers on {host}:{port} ({e})"
    return None


@functools.cache
def _missing(check: Check) -> str | None:
    return check()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(service, check): skip (fail in CI) when check() says it is missing"
    )


@pytest.hookimpl(tryfirst=True)  # before fixtures, which may be what uses the service
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        service, check = mark.args
        require(service, _missing(check))
