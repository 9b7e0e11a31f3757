"""The engine interface across the control socket: what an attached console and the control
commands drive.

It keeps a copy of each entry's output (a ring as long as the engine's) and the engine's last
view, both fed by the events the engine pushes, so a console reads them exactly as it reads a
local engine's. Lines keep their own times; a ``skipped`` event (this client fell behind) is
one line of its own in the copy. When the connection goes, every waiting action fails with an
``ActionError`` and ``closed`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from typing import Any

from backends.diagnostics.finding import Finding
from tui.engine import wire
from tui.engine.api import ActionError, Watcher
from tui.engine.output import Ring
from tui.engine.views import EngineView, from_json

GONE = "the engine went away (it stopped, or was killed): `prodserver-tui status` tells"


class _Refused(ConnectionError):
    """The engine's one line before it closed on us (another uid): what the user must see."""


class RemoteEngine:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        read_only: bool = False,
        ring_lines: int = 10_000,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.read_only = read_only
        self.info: dict[str, Any] = {}  # the engine's hello: pid, version, names, socket
        self.closed = asyncio.Event()
        self.why = "it closed the connection"  # why ``closed`` is set
        self.kept: str | None = None  # stop_all's word on keeping run-time scales
        self._ring_lines = ring_lines
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watchers: list[Watcher] = []
        self._copies: dict[str, Ring] = {}  # each entry's output as received
        self._view: EngineView | None = None
        self._pump: asyncio.Task[None] | None = None

    @classmethod
    async def over(
        cls, sock: socket.socket, read_only: bool = False, ring_lines: int = 10_000
    ) -> RemoteEngine:
        """Say hello on a connected socket and take the engine's first view."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=wire.MAX_FRAME)
        engine = cls(reader, writer, read_only, ring_lines)
        engine._pump = asyncio.get_running_loop().create_task(engine._read_forever())
        engine.info = (await engine.call("hello", v=wire.VERSION, read_only=read_only))["engine"]
        engine._copies = {n: Ring(max_lines=ring_lines) for n in engine.info["names"]}
        engine._view = from_json((await engine.call("view"))["view"])
        return engine

    async def subscribe(self, tail: int | None = None) -> None:
        """From now on, output and views pushed as they come: the last ``tail`` lines of
        each entry first (all the engine keeps when None)."""
        await self.call("subscribe", tail=tail)

    async def close(self) -> None:
        self.writer.close()
        if self._pump is not None:
            self._pump.cancel()

    # -- requests ------------------------------------------------------------------------------

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request and its answer; ActionError with the engine's words when refused."""
        if self.closed.is_set():
            raise ActionError(GONE)
        ask_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ask_id] = future
        try:
            self.writer.write(wire.encode({"id": ask_id, "op": op, **args}))
            answer = await future
        except (ConnectionError, OSError) as e:
            raise ActionError(GONE) from e
        finally:
            self._waiting.pop(ask_id, None)
        if not answer.get("ok"):
            raise ActionError(str(answer.get("error") or "refused, without a reason"))
        return answer

    async def _read_forever(self) -> None:
        gone = GONE
        try:
            while True:
                frame = await wire.read(self.reader)
                if frame is None:
                    break
                self._take(frame)
        except _Refused as e:
            self.why = gone = f"the engine refused this client: {e}"
        except (wire.FrameError, ConnectionError, OSError) as e:
            self.why = str(e) or type(e).__name__
        except (KeyError, TypeError, ValueError) as e:  # an engine of another version
            self.why = f"the engine sent what this client cannot read ({e!r})"
        except Exception as e:  # a fault of this client's own (a watcher): said as such
            self.why = f"this client failed reading the engine's events ({e!r})"
            raise
        finally:
            self.closed.set()
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ActionError(gone))
            for watcher in self._watchers:
                watcher.on_view()

    def _take(self, frame: dict[str, Any]) -> None:
        event = frame.get("ev")
        if event is None:
            future = self._waiting.get(frame.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(frame)
            elif frame.get("ok") is False:  # refused before any request (another uid)
                raise _Refused(str(frame.get("error")))
            return
        name = frame.get("name")
        ring = self._copies.get(name) if isinstance(name, str) else None
        if event == "view":
            self._view = from_json(frame["view"])
            for watcher in self._watchers:
                watcher.on_view()
            return
        if ring is None:
            return
        if event == "lines":
            for stream, at, texts in frame["runs"]:
                ring.append(str(stream), texts, at=at)
        elif event == "skipped":
            missed = int(frame["to"]) - int(frame["from"])
            ring.append("sys", [f"-- {missed} lines skipped: this console fell behind"])
        else:
            return
        for watcher in self._watchers:
            watcher.on_lines(str(name))

    # -- the interface -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._copies)

    def view(self) -> EngineView:
        assert self._view is not None, "over() takes the first view"
        return self._view

    def output(self, name: str) -> Ring:
        return self._copies[name]

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)

    async def start_all(self) -> None:
        """The engine started them when it began: nothing to ask of it."""

    async def start(self, name: str) -> None:
        await self.call("start", names=[name])

    async def stop(self, name: str) -> None:
        await self.call("stop", names=[name])

    async def restart(self, name: str) -> None:
        await self.call("restart", names=[name])

    async def scale(self, name: str, knob: str, value: object) -> bool:
        return bool((await self.call("scale", name=name, knob=knob, value=value))["converged"])

    async def stop_all(self) -> bool:
        answer = await self.call("stop_all")
        self.kept = answer.get("kept")
        return bool(answer["clean"])

    def kill_all(self) -> None:
        asyncio.get_running_loop().create_task(self._kill_all())

    async def _kill_all(self) -> None:
        with contextlib.suppress(ActionError):  # gone already: what it ran went with it
            await self.call("kill_all")

    async def detach(self) -> None:
        await self.call("detach")

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = (await self.call("ask", request=request))["answer"]
        assert isinstance(answer, dict)
        return answer

    async def check_deploy(self) -> list[Finding]:
        return [Finding(**f) for f in (await self.call("check_deploy"))["findings"]]
