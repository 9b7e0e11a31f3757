"""Whose listening socket a connection lands on: real sockets held by real processes, bound to
one address or to every address (IPv4, and IPv6 dual-stack, which IPv4 clients land on too),
held by the root of a tree or by a grandchild."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from needs import require

from backends.ports import describe, held_by, holder
from tui.engine.sampler import tree_pids

LISTEN = """\
import socket, sys, time
host = sys.argv[1]
if host == "::":
    server = socket.create_server((host, 0), family=socket.AF_INET6, dualstack_ipv6=True)
else:
    server = socket.create_server((host, 0))
print(server.getsockname()[1], flush=True)
time.sleep(60)
"""
# The listener one generation down, as npm's shell runs node.
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]])"


def listening(host: str, *, grandchild: bool = False) -> Iterator[tuple[int, int]]:
    argv = [sys.executable, "-c", PARENT, LISTEN, host] if grandchild else [
        sys.executable, "-c", LISTEN, host
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.pid, int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    ("bound", "reached"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::", "::1")],
)
def test_the_listener_is_found_wherever_it_is_bound(bound: str, reached: str) -> None:
    if ":" in bound:
        require("IPv6", None if socket.has_ipv6 else "this Python or host has no IPv6")
    for pid, port in listening(bound):
        assert held_by(tree_pids(pid), reached, port)
        assert not held_by([os.getpid()], reached, port)  # its parent holds no such socket
        assert not held_by([pid], reached, port + 1 if port < 65535 else port - 1)
        assert holder(reached, port) == pid
        assert f"(pid {pid}: {sys.executable} -c " in describe(pid)


def test_a_grandchild_holding_the_socket_is_the_trees() -> None:
    for pid, port in listening("127.0.0.1", grandchild=True):
        assert not held_by([pid], "127.0.0.1", port)  # the root has no socket of its own
        assert held_by(tree_pids(pid), "127.0.0.1", port)
        assert holder("127.0.0.1", port) not in (None, pid)


def test_nobody_listening_is_nobodys() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: no one answers there
        port = unused.getsockname()[1]
        assert holder("127.0.0.1", port) is None
        assert not held_by(tree_pids(os.getpid()), "127.0.0.1", port)
