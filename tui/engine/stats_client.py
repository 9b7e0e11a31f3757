"""The console's end of the statistics helper (``tui/engine/stats_helper.py``): start it, ask it,
and replace it when it dies or stops answering.

Guarded like every child: a parent-death signal, the watchdog, and the end of its stdin when
the console goes. A helper that died is replaced on the next request after a backoff, never
once the console is stopping; until then every request fails with why it died, which the
console shows where the statistics go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from backends.backoff import Backoff
from backends.base import Launch, flat
from tui.engine.deathsig import guarded

HEALTHY_AFTER = 10.0  # a helper that died sooner is replaced after a backoff, not at once
STOP_WAIT = 2.0  # after its stdin closes, a helper still there this long is killed
MAX_ANSWER = 64 * 1024 * 1024  # bytes of one answer line; a snapshot is a few KiB
STDERR_LINES = 20  # the end of what it wrote, to say why it died
STDERR_WIDTH = 300


class HelperFailed(Exception):
    """The helper could not answer; the message says why, in one line."""


class HelperError(HelperFailed):
    """The helper answered that the request failed (the database said no, say)."""


class StatsHelper:
    """One helper process at a time; one request at a time, answered in order."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: str,
        stopping: Callable[[], bool],
        watch: Callable[[int, Launch], None],
    ) -> None:
        argv = (sys.executable, "-P", "-m", "tui.engine.stats_helper", *args)
        self.launch = Launch(argv=argv, env=env, cwd=cwd, grace=STOP_WAIT)
        self._stopping = stopping
        self._watch = watch  # tells the watchdog about each new helper
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._seq = 0  # the number of the last request
        self._lock = asyncio.Lock()
        self._backoff = Backoff(1.0, 30.0)
        self._born = 0.0
        self._next_start = 0.0
        self._why = ""  # how the last one ended, said until the next one starts
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._reading: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The helper's answer; HelperFailed if it cannot give one, HelperError if it answers
        that the request failed.

        Answers carry their request's number: an asker cancelled while waiting (the task
        panel moved on to another row) leaves an answer behind, which the next asker skips.
        """
        async with self._lock:
            proc = await self._running()
            assert proc.stdin is not None and proc.stdout is not None
            self._seq += 1
            deadline = time.monotonic() + timeout
            try:
                proc.stdin.write(json.dumps({**request, "seq": self._seq}).encode() + b"\n")
                await proc.stdin.drain()
                while True:
                    line = await asyncio.wait_for(
                        proc.stdout.readline(), max(0.0, deadline - time.monotonic())
                    )
                    if not line:
                        raise await self._lost(proc, "")
                    answer = json.loads(line)
                    if not isinstance(answer, dict):
                        raise ValueError(
                            f"not an object: {flat(line[:80].decode(errors='replace'))}"
                        )
                    if answer.get("seq") == self._seq:
                        break
            except TimeoutError:
                raise await self._lost(proc, f"did not answer in {timeout:.0f} s") from None
            except (OSError, ValueError) as e:  # ValueError: nonsense, or over MAX_ANSWER
                raise await self._lost(proc, f"broke the protocol ({flat(str(e))})") from None
        if "error" in answer:
            raise HelperError(str(answer["error"]))
        return answer

    async def _running(self) -> asyncio.subprocess.Process:
        if self.proc is not None:
            if self.proc.returncode is None:
                return self.proc
            raise await self._lost(self.proc, "")  # it died between two requests
        if self._stopping():
            raise HelperFailed("the console is stopping")
        wait = self._next_start - time.monotonic()
        if wait > 0:
            raise HelperFailed(f"{self._why}; a new one starts in {wait:.0f} s")
        try:
            proc = await asyncio.create_subprocess_exec(
                *guarded(self.launch.argv, True, signal.SIGTERM),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.launch.cwd,
                env={**os.environ, **self.launch.env},
                start_new_session=True,
                limit=MAX_ANSWER,
            )
        except OSError as e:
            self._why = f"the statistics helper cannot start: {e.strerror or e}"
            self._next_start = time.monotonic() + self._backoff.next()
            raise HelperFailed(self._why) from None
        self.proc, self._born = proc, time.monotonic()
        self.starts += 1
        self._stderr.clear()
        assert proc.stderr is not None
        self._reading = asyncio.get_running_loop().create_task(self._keep_stderr(proc.stderr))
        self._watch(proc.pid, self.launch)
        return proc

    async def _lost(self, proc: asyncio.subprocess.Process, what: str) -> HelperFailed:
        """It died or hung: make sure it is gone, and say why with its last words."""
        _kill(proc)
        code = await proc.wait()
        if self._reading is not None:  # what it wrote before dying, to the end
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reading, 1.0)
        how = what or (f"was killed by {_signame(-code)}" if code < 0 else f"exited ({code})")
        last = f": {self._stderr[-1]}" if self._stderr and not what else ""
        self.proc = None
        if time.monotonic() - self._born > HEALTHY_AFTER:
            self._backoff.reset()
        delay = self._backoff.next()
        self._next_start = time.monotonic() + delay
        self._why = f"the statistics helper (pid {proc.pid}) {how}{last}"
        return HelperFailed(f"{self._why}; a new one starts in {delay:.0f} s")

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        """Read all of it (a full pipe would stall the helper), keep the last lines."""
        rest = b""
        while chunk := await stream.read(65536):
            *lines, rest = (rest + chunk).split(b"\n")
            rest = rest[-STDERR_WIDTH:]
            kept = (line[-STDERR_WIDTH:] for line in lines if line.strip())
            self._stderr.extend(flat(line.decode(errors="replace")) for line in kept)

    async def close(self) -> None:
        """End its stdin: it finishes the answer in hand and exits; killed if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT)
        except TimeoutError:
            _kill(proc)
            await proc.wait()
        if self._reading is not None:
            self._reading.cancel()

    def kill(self) -> None:
        if self.proc is not None:
            _kill(self.proc)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
