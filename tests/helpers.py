"""Small shared pieces for tests that drive the supervisor against real processes."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psutil

from backends.base import Project
from tui.project import Entry, build_entry


def command(name: str, argv: list[str], **extra: Any) -> Entry:
    project = Project("unused.settings", "/tmp", settings=SimpleNamespace())
    return build_entry(
        name, {"BACKEND": "backends.command.Command", "ARGS": argv, **extra}, project
    )


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition with a deadline instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.02)


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Pids still alive (not zombies) after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids if is_alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
