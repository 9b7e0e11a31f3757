"""Textual's Linux driver, made unable to stall the event loop on a terminal that stops reading.

Textual writes the screen through a thread with a queue of 30 writes; once a terminal stops
reading (a stopped tmux server, an SSH session whose client froze), the queue fills and the
next write blocks the event loop. That loop also reads every child's pipes and runs the signal
handlers: the children then block on their own output (a web server stops answering) and
SIGTERM goes unheard until the terminal reads again. Here the screen goes through an
``Outlet`` instead: frames the terminal does not take are dropped, and once it reads again
the whole screen is drawn afresh.

Ctrl+Z (SIGTSTP) would stop the whole console, and with it the reading of the children's
pipes: it is refused with a notice. A console stopped anyway (SIGSTOP cannot be refused) is
drawn afresh when it continues, without Textual's restart of application mode, which expects
a suspension that never happened here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import App
from textual.drivers.linux_driver import LinuxDriver

from tui.outlet import Outlet

FRAMES_KEPT = 64  # screen writes waiting for a terminal that stopped reading; older are dropped
DRAIN_AT_EXIT = 1.0  # seconds given to a stalled terminal to take the restoring sequences
REFUSE_SUSPEND = (
    "Ctrl+Z is refused: a stopped console stops reading its processes' output and they "
    "block. q quits; run it in tmux or screen to leave it running."
)


class Driver(LinuxDriver):
    """Writes never block; lost frames and a stop are followed by a full redraw."""

    def __init__(self, app: App[Any], **options: Any) -> None:
        super().__init__(app, **options)
        fd = self._file.fileno() if self._file else 2
        self._outlet = Outlet(fd, self._dropped, max_lines=FRAMES_KEPT)

    def write(self, data: str) -> None:
        self._outlet.write(data.encode("utf-8", "replace"))

    def close(self) -> None:
        super().close()
        self._outlet.drain(DRAIN_AT_EXIT)

    def _dropped(self, frames: int) -> bytes:
        """The terminal reads again after frames were lost: the screen it has is a patchwork
        (runs on the outlet's thread; the redraw is the loop's business)."""
        self._soon(self._app.refresh)
        return b""

    def _sigtstp_application(self, *_: object) -> None:
        """Not Textual's suspension: the app says why it refuses (``action_suspend_process``)."""
        self._soon(self._app.action_suspend_process)

    def _sigcont_application(self, *_: object) -> None:
        self._soon(self._app.refresh)

    def _soon(self, callback: Callable[..., object], *args: object, **kwargs: object) -> None:
        self._loop.call_soon_threadsafe(partial(callback, *args, **kwargs))
