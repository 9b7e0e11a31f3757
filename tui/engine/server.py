"""The control socket: the engine interface for clients in other processes.

Protocol (version ``wire.VERSION``, documented in docs/protocol.md): one JSON object per line.
A client sends requests ``{"id": N, "op": ..., ...}`` and gets ``{"id": N, "ok": true, ...}``
or ``{"id": N, "ok": false, "error": "one line"}``; once it subscribes, the engine also pushes
events: ``{"ev": "lines", ...}``, ``{"ev": "skipped", ...}``, ``{"ev": "view", ...}``.

Output is pulled from the engine's rings per client, never pushed into per-client queues: each
client has a cursor per entry and a sender that copies lines after it while the client's
socket takes them (``drain``). A client that reads slowly or not at all only falls behind:
its sender waits, the engine and the other clients go on, and what it holds in the engine is
one transport buffer. When it reads again and the ring has moved past its cursor, it gets one
``skipped`` event saying how many lines it missed, then the lines that are still kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from backends.base import one_line
from tui import version
from tui.engine import place, wire
from tui.engine.api import ActionError
from tui.engine.local import LocalEngine
from tui.engine.logfiles import tail
from tui.engine.output import Line, Ring
from tui.engine.views import to_json
from tui.keep_scale import snippet

BATCH = 2_000  # lines per frame: a few hundred KB at most, well below wire.MAX_FRAME
HIGH_WATER = 256 * 1024  # bytes waiting for a client before its sender waits for it to read
TOO_FAR_BEHIND = 8 * 1024 * 1024  # bytes of answers a client does not read: it is dropped
PACE = 0.05  # s: at most this often a sender wakes while lines trickle in (not a whole frame)
VIEW_EVERY = 1.0  # s: usage and rates change without an event; a client sees them this often
ACTIONS = {"start", "stop", "restart", "scale", "stop_all", "kill_all", "ask", "check_deploy"}


class Server:
    """Serves one engine to every client; ``owner`` is the connection whose loss stops it."""

    def __init__(
        self,
        engine: LocalEngine,
        where: place.Place,
        on_stop: Callable[[], None],
        detached: bool,
    ) -> None:
        self.engine = engine
        self.place = where
        self.on_stop = on_stop  # tells the host that everything has been stopped: it exits
        self.detached = detached  # True: no client's leaving stops it (``up``, or detached)
        self.clients: set[Client] = set()
        self._server: asyncio.AbstractServer | None = None
        self._listener: place.Listener | None = None
        engine.watch(self)

    async def start(self, listener: place.Listener) -> None:
        self._listener = listener
        self._server = await asyncio.start_unix_server(
            self._connected, sock=listener.socket, limit=wire.MAX_FRAME
        )

    async def adopt(self, sock: socket.socket) -> Client:
        """The foreground console's end of a socket pair: its loss stops everything."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=wire.MAX_FRAME)
        client = Client(self, reader, writer, owner=True)
        self._begin(client)
        return client

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.close()
        if self._listener is not None:
            self._listener.close()

    # -- the engine's events, for every client ---------------------------------------------

    def on_lines(self, name: str) -> None:
        for client in self.clients:
            client.lines_came(name)

    def on_view(self) -> None:
        for client in self.clients:
            client.wake.set()

    # -- connections -------------------------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = place.peer_uid(sock)
        if not place.allowed(uid):
            # Its hello first: a client whose write fails because we closed (EPIPE) drops
            # what it has not read yet, and with it this answer, the only word it would get.
            with contextlib.suppress(OSError, ValueError):  # no hello in time, or too long
                await asyncio.wait_for(reader.readline(), 1.0)
            writer.write(
                wire.encode({"ok": False, "error": f"uid {uid} may not control this engine"})
            )
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.drain(), 1.0)
            writer.close()
            return
        self._begin(Client(self, reader, writer, owner=False))

    def _begin(self, client: Client) -> None:
        self.clients.add(client)
        client.task = asyncio.get_running_loop().create_task(client.serve())
        client.task.add_done_callback(lambda _: self._gone(client))

    def _gone(self, client: Client) -> None:
        self.clients.discard(client)
        if client.owner and not client.detached and not self.detached:
            # The foreground console died or its terminal went: stop everything, as the
            # console always did when it was the engine itself.
            asyncio.get_running_loop().create_task(self.stop_all())

    async def stop_all(self) -> bool:
        clean = await self.engine.stop_all()
        self.on_stop()
        return clean

    def kept(self) -> str | None:
        """The settings that would keep what was scaled at run time (``tui.keep_scale``)."""
        supervisor = self.engine.supervisor
        return snippet([c.entry for c in supervisor.children.values()], supervisor.redact)

    def hello(self) -> dict[str, Any]:
        project = self.engine.supervisor.project
        return {
            "version": version(),
            "protocol": wire.VERSION,
            "pid": os.getpid(),
            "names": self.engine.names(),
            "project": project.base_dir if project else None,
            "settings_module": self.engine.settings_module,
            "socket": str(self.place.socket),
            "state": str(self.place.state),
            "detached": self.detached,
        }


class Client:
    """One connection: its requests answered in order of arrival, its output sent by cursor."""

    def __init__(
        self,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        owner: bool,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.owner = owner
        self.detached = False  # said it leaves: its going does not stop a foreground engine
        self.read_only = False
        self.wake = asyncio.Event()  # lines came, or the view may have changed
        self.full = asyncio.Event()  # a whole frame of lines waits for this client
        self.cursors: dict[str, int] = {}  # per entry, the seq of the next line to send
        self.task: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        writer.transport.set_write_buffer_limits(high=HIGH_WATER)

    def lines_came(self, name: str) -> None:
        self.wake.set()
        cursor = self.cursors.get(name)
        if cursor is not None and self.server.engine.output(name).next_seq - cursor >= BATCH:
            self.full.set()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def send(self, frame: dict[str, Any]) -> None:
        """Never waits: a client that leaves answers unread past TOO_FAR_BEHIND is dropped."""
        if self.writer.transport.get_write_buffer_size() > TOO_FAR_BEHIND:
            self.close()
            return
        self.writer.write(wire.encode(frame))

    async def serve(self) -> None:
        try:
            await self._serve()
        finally:
            if self._sender is not None:
                self._sender.cancel()
            for job in self._jobs:
                job.cancel()
            self.writer.close()

    async def _serve(self) -> None:
        hello = True
        while True:
            try:
                frame = await wire.read(self.reader)
            except wire.FrameError as e:
                self.send({"ok": False, "error": f"bad frame: {e}"})
                return
            except (ConnectionError, OSError):
                return
            if frame is None:
                return
            ask_id = frame.get("id")
            if hello:
                if frame.get("op") != "hello" or frame.get("v") != wire.VERSION:
                    self.send({"id": ask_id, "ok": False, "error": _bad_hello(frame)})
                    return
                self.read_only = bool(frame.get("read_only"))
                self.send({"id": ask_id, "ok": True, "engine": self.server.hello()})
                hello = False
                continue
            op = frame.get("op")
            if self.read_only and op in ACTIONS:
                self.send({"id": ask_id, "ok": False, "error": f"read-only client: {op} refused"})
                continue
            # Each request runs on its own: a restart that takes 10 s does not hold up a view.
            job = asyncio.get_running_loop().create_task(self._answer(ask_id, op, frame))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _answer(self, ask_id: object, op: object, frame: dict[str, Any]) -> None:
        try:
            answer = await self._do(op, frame)
        except ActionError as e:
            answer = {"ok": False, "error": one_line(str(e), 4096)}
        except (KeyError, TypeError, ValueError) as e:
            answer = {"ok": False, "error": f"bad request for {op!r}: {one_line(repr(e), 400)}"}
        except OSError as e:  # a log file that cannot be read, say
            answer = {"ok": False, "error": f"{op}: {one_line(str(e), 400)}"}
        try:
            self.send({"id": ask_id, **answer})
        except wire.FrameError:  # never leave a request unanswered
            self.send(
                {
                    "id": ask_id,
                    "ok": False,
                    "error": f"{op}: the answer would be larger than a frame ({wire.MAX_FRAME} "
                    f"bytes); ask for less (`logs -n` with fewer lines)",
                }
            )

    async def _do(self, op: object, frame: dict[str, Any]) -> dict[str, Any]:
        engine = self.server.engine
        if op == "view":
            return {"ok": True, "view": to_json(engine.view())}
        if op == "subscribe":
            self._subscribe(frame.get("since"), frame.get("tail"))
            return {"ok": True}
        if op in ("start", "stop", "restart"):
            names = _names(engine, frame["names"])
            for name in names:
                await getattr(engine, str(op))(name)
            return {"ok": True}
        if op == "scale":
            done = await engine.scale(
                _names(engine, [frame["name"]])[0], str(frame["knob"]), frame["value"]
            )
            return {"ok": True, "converged": done}
        if op == "stop_all":
            clean = await self.server.stop_all()
            return {"ok": True, "clean": clean, "kept": self.server.kept()}
        if op == "kill_all":
            engine.kill_all()
            return {"ok": True}
        if op == "detach":
            self.detached = True
            if self.owner:
                self.server.detached = True  # the foreground engine now outlives every client
            return {"ok": True}
        if op == "ask":
            return {"ok": True, "answer": await engine.ask(dict(frame["request"]))}
        if op == "check_deploy":
            from dataclasses import asdict

            return {"ok": True, "findings": [asdict(f) for f in await engine.check_deploy()]}
        if op == "logs":
            names = _names(engine, frame.get("names") or engine.names())
            n = int(frame.get("n", 100))
            logs = engine.supervisor.logs
            if logs is not None:  # the files hold more than the rings, and earlier runs
                found = {name: await _from_file(logs.folder, name, n) for name in names}
                return {"ok": True, "lines": found}
            return {
                "ok": True,
                "lines": {name: _frame(_last(engine.output(name), n)) for name in names},
            }
        raise ActionError(f"unknown op {op!r}: this engine speaks protocol {wire.VERSION}")

    def _subscribe(self, since: object, tail: object) -> None:
        """Output from ``since`` (per entry, the next seq wanted) or the last ``tail`` lines,
        then everything new; the view whenever it changes."""
        engine = self.server.engine
        cursors = {}
        for name in engine.names():
            ring = engine.output(name)
            wanted = since.get(name) if isinstance(since, dict) else None
            if isinstance(wanted, int):
                cursors[name] = wanted
            elif isinstance(tail, int):
                cursors[name] = max(ring.first_seq, ring.next_seq - tail)
            else:
                cursors[name] = ring.first_seq
        if self._sender is not None:
            self._sender.cancel()
        self.cursors = cursors
        self._sender = asyncio.get_running_loop().create_task(self._send_forever(cursors))

    async def _send_forever(self, cursors: dict[str, int]) -> None:
        """Lines are gathered for up to PACE into fewer, bigger frames, unless a whole frame
        waits: a flood fills the engine's ring in a few tens of milliseconds, and pacing a
        client that keeps up would make it skip most of the lines (bench/server.py)."""
        with contextlib.suppress(ConnectionError, OSError):  # it left: nothing more to send
            await self._send(cursors)

    async def _send(self, cursors: dict[str, int]) -> None:
        engine = self.server.engine
        shown: dict[str, Any] | None = None
        while True:
            self.wake.clear()  # before copying: what comes meanwhile wakes the next round
            self.full.clear()
            for name, cursor in cursors.items():
                ring = engine.output(name)
                while cursor < ring.next_seq:
                    if cursor < ring.first_seq:
                        self.send(
                            {"ev": "skipped", "name": name, "from": cursor, "to": ring.first_seq}
                        )
                        cursor = cursors[name] = ring.first_seq
                    lines = ring.since(cursor, BATCH)
                    if not lines:
                        break
                    self.send({"ev": "lines", "name": name, **_frame(lines)})
                    cursor = lines[-1].seq + 1
                    cursors[name] = cursor
                    await self.writer.drain()  # waits while the client does not read
            view = to_json(engine.view())
            if view != shown:
                self.send({"ev": "view", "view": view})
                shown = view
                await self.writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), VIEW_EVERY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.full.wait(), PACE)


def _runs(lines: Iterable[tuple[str, float | None, str]]) -> list[list[Any]]:
    """Lines as runs of one stream and one time, ``[stream, time, [text, ...]]``: lines read
    at once share both, so a flood encodes in a fifth of the time a list per line takes."""
    runs: list[list[Any]] = []
    texts: list[str] = []
    key: tuple[str, float | None] | None = None
    for stream, at, text in lines:
        if (stream, at) != key:
            texts = []
            runs.append([stream, at, texts])
            key = (stream, at)
        texts.append(text)
    return runs


def _last(ring: Ring, n: int) -> list[Line]:
    return ring.since(ring.next_seq - n)


def _frame(lines: list[Line]) -> dict[str, Any]:
    """Kept lines (consecutive seqs) as ``first`` and runs."""
    return {
        "first": lines[0].seq if lines else None,
        "runs": _runs((line.stream, line.time, line.text) for line in lines),
    }


async def _from_file(folder: Path, name: str, n: int) -> dict[str, Any]:
    lines = await asyncio.to_thread(tail, folder, name, n)
    return {"first": None, "runs": _runs((line.stream, line.time, line.text) for line in lines)}


def _names(engine: LocalEngine, names: object) -> list[str]:
    """Every name known, or nothing is done: a typo must not restart half of them."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ActionError("names must be a list of entry names")
    unknown = [n for n in names if n not in engine.names()]
    if unknown:
        known = ", ".join(engine.names())
        raise ActionError(
            f"no entry named {', '.join(map(repr, unknown))}: this engine runs {known}"
        )
    return names


def _bad_hello(frame: dict[str, Any]) -> str:
    if frame.get("op") != "hello":
        return f'say hello first: {{"op": "hello", "v": {wire.VERSION}}}'
    return (
        f"protocol version {frame.get('v')!r} not supported: this engine speaks {wire.VERSION} "
        f"(prodserver-tui {version()}); use the same prodserver-tui for the client"
    )
