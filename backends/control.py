"""The control channel: absolute scaling targets to a running process, and its counts back.

A signal moves a count by one and can be lost: CPython runs one handler for several pending
signals of one number, and SIGCONT discards a pending SIGTTIN / SIGTTOU. Over this channel
the console says where to be ("processes 3"), which is harmless to repeat, and the process
answers what it has ("processes 3", "threads 4"), which the console compares with what it
asked for. It is a Unix datagram socket in a private (0700) folder: one message is one
datagram (nothing to frame, nothing to parse half of), and only this user can write to it:
the listener refuses a folder that is not private (``backends.private``), e.g. a shared one
named by hand.
The path reaches the process in its environment (``ENV``); without it there is no channel
and the process's own signals still work, for people who run it by hand.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

from backends import private

ENV = "PRODSERVER_TUI_CONTROL"
MAX_MESSAGE = 4096


def encode(values: Mapping[str, int]) -> bytes:
    """``{"processes": 3}`` -> ``b"processes 3"``, one knob a line."""
    return "\n".join(f"{name} {value}" for name, value in values.items()).encode()


def decode(data: bytes) -> dict[str, int]:
    """Lines of ``name number``; anything else is skipped (a status request is empty)."""
    values = {}
    for line in data.decode(errors="replace").splitlines():
        name, _, number = line.strip().partition(" ")
        if name.isidentifier() and number.isdigit() and len(number) < 10:
            values[name] = int(number)
    return values


class Listener:
    """The process's end: targets in, counts out to whoever asked."""

    def __init__(self, path: str) -> None:
        """Raises OSError (``private.UnsafePath`` among them) when it cannot listen there."""
        folder = private.folder(os.path.dirname(os.path.abspath(path)), make=False)
        self.path = path = str(folder / os.path.basename(path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a previous run that was killed
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(path)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[tuple[dict[str, int], str]]:
        """Every message waiting now, with the address to answer."""
        found: list[tuple[dict[str, int], str]] = []
        while True:
            try:
                data, address = self.sock.recvfrom(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return found
            if isinstance(address, str) and address:
                found.append((decode(data), address))

    def answer(self, address: str, values: Mapping[str, int]) -> None:
        """Best effort: a console that went away (or is slow to read) must not stop us."""
        with contextlib.suppress(OSError):
            self.sock.sendto(encode(values), address)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Client:
    """The console's end: sends targets, keeps the latest counts the process reported."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        own = f"{path}.console"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own)
        self.sock.bind(own)
        self.reported: dict[str, int] = {}

    def send(self, values: Mapping[str, int]) -> None:
        """Not listening yet (starting), gone (restarting) or busy: the next send repeats it."""
        with contextlib.suppress(OSError):
            self.sock.sendto(encode(values), self.path)

    def forget(self) -> None:
        """A new process: what the old one said (answers still queued too) is not its."""
        self.read()
        self.reported = {}

    def read(self) -> dict[str, int]:
        """The counts from the newest answers waiting now, over what was known before."""
        while True:
            try:
                self.reported.update(decode(self.sock.recv(MAX_MESSAGE)))
            except (BlockingIOError, InterruptedError):
                return self.reported
            except OSError:  # e.g. a refused answer reported on this socket: nothing to read
                return self.reported
