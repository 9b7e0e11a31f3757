"""Our own output, toward a reader that may stop reading at any time.

A paused ``| less``, a terminal nobody reads, a stopped tmux server, a console suspended
elsewhere: a blocking write to any of them would hold the event loop, and with it the reading
of every child's pipes (the children then block on their own writes: a web server stops
answering) and the signal handlers (SIGTERM goes unheard). Production never waits for the
screen, so the blocking write happens on a thread of its own and the caller never waits:
what the reader does not take waits here, bounded, and the oldest is dropped past the bound.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable


class Outlet:
    """A writer thread over ``fd`` with a bounded backlog; ``write`` never blocks.

    Past ``max_lines`` lines or ``max_bytes`` bytes waiting, the oldest waiting chunks are
    dropped, and where they were, the thread writes what ``gap(lines dropped)`` returns
    (a "N lines skipped" line; or nothing, after asking for a full redraw). ``gap`` runs on
    the writer thread, once the reader takes data again. A reader gone for good (EPIPE, EIO)
    ends the thread and calls ``on_broken`` from it; later writes are ignored.
    """

    def __init__(
        self,
        fd: int,
        gap: Callable[[int], bytes],
        on_broken: Callable[[], object] = lambda: None,
        max_lines: int = 10_000,
        max_bytes: int = 4_000_000,
    ) -> None:
        self.fd = fd
        self.gap = gap
        self.on_broken = on_broken
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.dropped = 0  # lines dropped so far, in all
        self.broken = False
        self._pending: deque[tuple[bytes, int, int]] = deque()  # (data, lines, noted)
        self._lines = self._bytes = 0  # waiting, in _pending
        self._gap = 0  # lines dropped since the last gap was written
        self._writing = False
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="outlet", daemon=True).start()

    def write(self, data: bytes, lines: int = 1, noted: int = 0) -> None:
        """``noted``: lines missing before these, which ``data`` says itself; dropping the
        chunk drops that note too, so the next gap counts them."""
        with self._cond:
            if self.broken:
                return
            self._pending.append((data, lines, noted))
            self._lines += lines
            self._bytes += len(data)
            while len(self._pending) > 1 and (
                self._lines > self.max_lines or self._bytes > self.max_bytes
            ):
                old, n, noted = self._pending.popleft()
                self._lines -= n
                self._bytes -= len(old)
                self._gap += n + noted
                self.dropped += n
            self._cond.notify()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for everything waiting to be written; False if the reader
        did not take it all (still stalled) — the caller goes on regardless."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self.broken or not (self._pending or self._gap or self._writing), timeout
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._gap)
                if self._gap:
                    data, self._gap = self.gap(self._gap), 0
                else:
                    # Everything waiting, in one write: each write lets go of the GIL, and
                    # taking it back from a busy event loop can take a switch interval (5 ms),
                    # so a chunk per write fell behind a flood and dropped most of it.
                    data = b"".join(chunk for chunk, _, _ in self._pending)
                    self._pending.clear()
                    self._lines = self._bytes = 0
                self._writing = True
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError:  # the reader is gone (``| head`` ended, the terminal closed)
                with self._cond:
                    self.broken = True
                    self._pending.clear()
                    self._cond.notify_all()
                self.on_broken()
                return
            with self._cond:
                self._writing = False
                self._cond.notify_all()
