"""The compact process list shown on small terminals: one row per process, the current marked.

At 80x24 a grid of panes would be unreadable; a list like process-compose's table plus the
current process's log keeps every process in sight and one of them in full.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from tui import format as fmt
from tui.engine.views import ProcessView


class ProcessList(Widget):
    DEFAULT_CSS = """
    ProcessList { height: auto; max-height: 10; border-bottom: solid $panel-lighten-2; }
    """

    class Picked(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, children: list[ProcessView], clock: Callable[[], float] = time.time) -> None:
        super().__init__(id="process-list")
        self.children_ = children
        self.clock = clock
        self.current = 0

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        return len(self.children_)

    def render(self) -> Text:
        width = max(len(c.name) for c in self.children_)
        rows = Text(no_wrap=True, overflow="ellipsis")
        for i, c in enumerate(self.children_):
            style = "reverse" if i == self.current else ""
            u = c.usage
            up = fmt.duration(self.clock() - c.started_at) if c.started_at and c.pid else "-"
            rows.append(f"{i + 1} {c.name:<{width}} ", style=f"bold {style}")
            rows.append(
                f"{fmt.STATE_MARK[c.state]} {c.state!s:<12}", style=fmt.STATE_STYLE[c.state]
            )
            rows.append(
                f" {c.pid or '-':>7}  cpu {f'{u.cpu:.1f}%' if u else '-':>6}"
                f"  mem {fmt.size(u.rss if u else None):>7}  up {up:>7}  ↻{c.restarts}",
                style=style,
            )
            if i < len(self.children_) - 1:
                rows.append("\n")
        return rows

    def on_click(self, event: events.Click) -> None:
        if 0 <= event.y < len(self.children_):
            self.post_message(self.Picked(event.y))
