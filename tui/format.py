"""Numbers and states the way the console shows them: short, aligned, coloured by meaning."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.cells import cell_len
from rich.text import Text

from backends.base import plural
from backends.wakeup_line import MODES
from tui.engine.views import State, WakeView

STATE_STYLE = {
    State.STARTING: "yellow",
    State.RUNNING: "green",
    State.STOPPING: "yellow",
    State.STOPPED: "bright_black",
    State.BACKOFF: "dark_orange",
    State.CONFIG_ERROR: "bold red",
}
STATE_MARK = {
    State.STARTING: "◐",
    State.RUNNING: "●",
    State.STOPPING: "◑",
    State.STOPPED: "○",
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


def wake_up(views: Sequence[WakeView], counted: bool = True) -> str:
    """How a task worker's processes hear of new tasks: ``notify (2 processes)`` when they
    agree (``notify`` unless ``counted``), ``notify 1, polling 1`` when they differ; empty
    while none has said."""
    counts = Counter(view.mode for view in views)
    if len(counts) == 1:
        [(mode, count)] = counts.items()
        return f"{mode} ({plural(count, 'process')})" if counted else mode
    known = sorted(counts, key=lambda mode: MODES.index(mode) if mode in MODES else len(MODES))
    return ", ".join(f"{mode} {counts[mode]}" for mode in known)


# How much a fact matters when its line is too short for all of them: higher survives longer.
# Errors, restarts and the last exit first; addresses, pids and uptimes give way first.
LOW, NORMAL, HIGH, CRITICAL = -1, 0, 1, 2

Part = tuple[str, str] | tuple[str, str, int]  # text, style[, priority (default NORMAL)]


def priority(part: Part) -> int:
    return part[2] if len(part) == 3 else NORMAL


def failed(count: int) -> Part:
    """Failures in the last minute: they survive a narrow line when there are some."""
    if count:
        return (f"failed/1m {count}", "red", CRITICAL)
    return ("failed/1m 0", "", LOW)


def fit(head: Text, parts: list[Part], width: int, gap: str = "  ") -> Text:
    """Append parts to head on one line, leaving out whole parts that do not fit rather than
    cutting words. Room goes to the highest priorities first (ties: the earlier part), so at
    80 columns a line loses its least useful facts; what is kept stays in its given order."""
    line = head.copy()
    line.no_wrap, line.overflow, line.end = True, "ellipsis", ""
    used = line.cell_len
    ranked = sorted(range(len(parts)), key=lambda i: -priority(parts[i]))
    kept: set[int] = set()
    for i in ranked:
        cost = cell_len(parts[i][0]) + (cell_len(gap) if used else 0)
        if used + cost <= width:
            kept.add(i)
            used += cost
    for i, (text, style, *_) in enumerate(parts):
        if i in kept:
            line.append(gap + text if line.cell_len else text, style=style)
    return line
