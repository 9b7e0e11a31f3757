"""The one interface every client has to the engine: views, output by sequence, actions.

The console, headless, the control commands and the socket server use nothing else, so a
console works the same on the engine in its own process (``tui.engine.local``) and on one
across the control socket (``tui.remote``), as process-compose's TUI works on its project
interface whether the project runs in-process or behind its REST API.
"""

from __future__ import annotations

from typing import Any, Protocol

from backends.diagnostics.finding import Finding
from tui.engine.output import Ring
from tui.engine.views import EngineView


class ActionError(Exception):
    """An action the engine refused, in one line (a bad value, a read-only client, no such
    entry, a lost connection): clients show it as it is."""


class Watcher(Protocol):
    def on_lines(self, name: str) -> None:
        """New output for ``name``: pull it from ``Engine.output`` (batched by the caller)."""

    def on_view(self) -> None:
        """A state or the findings changed: read ``Engine.view`` (numbers change without it:
        clients read the view on their own clock too)."""


class Engine(Protocol):
    read_only: bool  # every action raises ActionError

    def names(self) -> list[str]: ...

    def view(self) -> EngineView: ...

    def output(self, name: str) -> Ring:
        """The kept output of ``name``, oldest first, by sequence number; read it, never
        append to it."""
        ...

    def watch(self, watcher: Watcher) -> None: ...

    async def start_all(self) -> None: ...

    async def start(self, name: str) -> None: ...

    async def stop(self, name: str) -> None: ...

    async def restart(self, name: str) -> None: ...

    async def scale(self, name: str, knob: str, value: object) -> bool:
        """True once it runs with it (or applies at the next start); False when it took a
        restart or could not converge (its pane says why); ActionError for a bad value."""
        ...

    async def stop_all(self) -> bool:
        """Stop every process and the engine; True when none had to be killed."""
        ...

    def kill_all(self) -> None:
        """SIGKILL every process tree now (a second quit)."""
        ...

    async def detach(self) -> None:
        """This client leaves and every process goes on (a foreground engine becomes a
        detached one); ActionError when the engine lives inside this client's process."""
        ...

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """A question for the statistics helper (tracebacks, stuck tasks, acting on them)."""
        ...

    async def check_deploy(self) -> list[Finding]:
        """Django's ``check --deploy`` for the project, masked."""
        ...
