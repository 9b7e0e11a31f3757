"""The engine interface on a supervisor in this process: what the socket server serves, and
what headless and the tests drive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from backends.base import ConfigError
from backends.diagnostics.finding import Finding
from tui.engine.api import ActionError, Watcher
from tui.engine.child import Child
from tui.engine.output import Line, Ring
from tui.engine.stats_client import HelperFailed
from tui.engine.supervisor import Supervisor
from tui.engine.views import EngineView


class LocalEngine:
    read_only = False

    def __init__(
        self,
        supervisor: Supervisor,
        settings_module: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.supervisor = supervisor
        self.clock = clock  # what "now" is for the rates in views (a frozen scene fixes it)
        project = supervisor.project
        self.settings_module = (
            settings_module
            if settings_module is not None
            else project.settings_module
            if project
            else ""
        )
        self._watchers: list[Watcher] = []
        supervisor.subscribe(self)

    # -- the supervisor's events, passed on by name --------------------------------------------

    def on_lines(self, child: Child, lines: list[Line]) -> None:
        for watcher in self._watchers:
            watcher.on_lines(child.name)

    def on_state(self, child: Child) -> None:
        for watcher in self._watchers:
            watcher.on_view()

    def on_findings(self, findings: list[Finding]) -> None:
        for watcher in self._watchers:
            watcher.on_view()

    # -- the interface -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.supervisor.children)

    def view(self) -> EngineView:
        return self.supervisor.view(self.settings_module, self.clock())

    def output(self, name: str) -> Ring:
        return self._child(name).ring

    def watch(self, watcher: Watcher) -> None:
        self._watchers.append(watcher)

    async def start_all(self) -> None:
        await self.supervisor.start_all()

    async def start(self, name: str) -> None:
        await self._child(name).start()

    async def stop(self, name: str) -> None:
        await self._child(name).stop()

    async def restart(self, name: str) -> None:
        await self._child(name).restart()

    async def scale(self, name: str, knob: str, value: object) -> bool:
        try:
            step = self.supervisor.scale(self._child(name).name, knob, value)
        except ConfigError as e:
            raise ActionError(str(e)) from None
        return await step

    async def stop_all(self) -> bool:
        return await self.supervisor.stop_all()

    def kill_all(self) -> None:
        self.supervisor.kill_all()

    async def detach(self) -> None:
        raise ActionError(
            "this engine runs inside this process and stops with it: start it with "
            "`prodserver-tui up` to leave it running"
        )

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.supervisor.ask(request)
        except HelperFailed as e:
            raise ActionError(str(e)) from None

    async def check_deploy(self) -> list[Finding]:
        from backends.diagnostics import check_deploy

        project = self.supervisor.project
        if project is None:
            raise ActionError("no Django project to check")
        found = await asyncio.get_running_loop().run_in_executor(None, check_deploy, project)
        return self.supervisor.masked(found)

    def _child(self, name: str) -> Child:
        try:
            return self.supervisor.children[name]
        except KeyError:
            raise ActionError(f"no entry named {name!r}: see `prodserver-tui status`") from None
