"""The command palette (Ctrl+P): one entry per process and action, so everything has a name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import ConsoleApp


class ProcessCommands(Provider):
    def commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app: ConsoleApp = self.app  # type: ignore[assignment]
        found: list[tuple[str, Callable[[], object], str]] = []
        for pane in app.panes:
            name = pane.child.name
            pick = partial(app.pick, pane)

            def then(
                action: Callable[[], object], pick: Callable[[], None] = pick
            ) -> Callable[[], object]:
                def run() -> None:
                    pick()
                    action()

                return run

            found += [
                (f"{name}: restart", then(app.action_restart), "graceful stop, then start"),
                (
                    f"{name}: stop / start",
                    then(app.action_stop_start),
                    "stop it, or start it again",
                ),
                (f"{name}: zoom", then(app.action_zoom), "this pane alone, full screen"),
                (f"{name}: search the log", then(app.action_search), "find text in its output"),
            ]
            backend = pane.child.entry.backend
            if backend is not None and backend.knobs:
                found.append((f"{name}: scale…", then(app.action_scale_dialog), "every knob"))
                if backend.main_knob:
                    knob = backend.main_knob
                    found += [
                        (f"{name}: {knob} +1", then(app.action_scale_up), f"one more {knob}"),
                        (f"{name}: {knob} -1", then(app.action_scale_down), f"one fewer {knob}"),
                    ]
            if pane.child.kind == "tasks":
                found.append((f"{name}: task panel", then(app.action_tasks), "queues, failures"))
        found += [
            ("restart all", app.action_restart_all, "every process, one after the other"),
            (
                "run check --deploy",
                app.action_check_deploy,
                "Django's deployment checks (manage.py check --deploy), in a dialog",
            ),
            ("help", app.action_help, "every key"),
            ("quit", app.action_quit, "stop every process gracefully, then exit"),
        ]
        return found

    async def discover(self) -> Hits:
        for title, run, help_text in self.commands():
            yield Hit(1.0, title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, run, help_text in self.commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
