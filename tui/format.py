"""Numbers and states the way the console shows them: short, aligned, coloured by meaning."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text

from tui.child import State

STATE_STYLE = {
    State.STARTING: "yellow",
    State.RUNNING: "green",
    State.STOPPING: "yellow",
    State.STOPPED: "bright_black",
    State.EXITED: "red",
    State.KILLED: "red",
    State.BACKOFF: "dark_orange",
    State.CONFIG_ERROR: "bold red",
}
STATE_MARK = {
    State.STARTING: "◐",
    State.RUNNING: "●",
    State.STOPPING: "◑",
    State.STOPPED: "○",
    State.EXITED: "✖",
    State.KILLED: "✖",
    State.BACKOFF: "↻",
    State.CONFIG_ERROR: "✖",
}


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") or n >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def duration(seconds: float | None) -> str:
    """Seconds only in the first minute: an uptime then changes once a minute, so an idle
    pane is redrawn once a minute instead of every second (see ``duration_step``)."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def duration_step(seconds: float) -> int:
    """The unit of the last figure ``duration`` shows: how often its text changes."""
    return 1 if seconds < 60 else 60 if seconds < 86400 else 3600


def rate(per_second: float | None) -> str:
    if per_second is None:
        return "-"
    return f"{per_second:.1f}/s" if per_second < 100 else f"{per_second:.0f}/s"


Part = tuple[str, str]  # text, style


def fit(head: Text, parts: list[Part], width: int, gap: str = "  ") -> Text:
    """Append parts to head on one line, leaving out whole parts that do not fit rather than
    cutting words: at 80 columns a line loses its least useful facts, never half of one."""
    line = head.copy()
    line.no_wrap, line.overflow, line.end = True, "ellipsis", ""
    for text, style in parts:
        piece = gap + text if line.cell_len else text
        if line.cell_len + cell_len(piece) <= width:
            line.append(piece, style=style)
    return line
