"""A Line-API view of one process's output ring: draws only the rows on screen.

There is no widget per line and no copy of the output: rows are read from the supervisor's
ring, so the view is bounded by the ring. ``sync`` (a few times a second, visible panes only)
notices new and evicted lines; a flood therefore costs one refresh per tick, not one per line.
Lines are untrusted: they become Rich ``Text`` through ``Text.from_ansi`` (colours kept, the
sanitiser already removed every other escape), never through markup.
"""

from __future__ import annotations

import bisect
import re
from itertools import accumulate
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.output import Line, Ring

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
_GUTTER = {
    "out": ("  ", Style()),
    "err": ("▌ ", Style(color="red")),
    "sys": ("» ", Style(color="cyan")),
}
_SYS_STYLE = Style(color="cyan", italic=True)
_MIN_CACHED = 32  # drawn lines kept by a small pane
_MATCH_STYLE = Style(color="black", bgcolor="yellow")


def plain(text: str) -> str:
    """The characters a line shows, tabs expanded to cells as the drawing does (a wide
    character takes two cells, so ``str.expandtabs`` would put the tab stops elsewhere)."""
    text = _SGR.sub("", text)
    if "\t" not in text:
        return text
    shown = Text(text)
    shown.expand_tabs(8)
    return shown.plain


def cells(text: str) -> int:
    """Cells a line takes; most lines are plain ASCII, measured without any work."""
    if text.isascii() and "\x1b" not in text and "\t" not in text:
        return len(text)
    return cell_len(plain(text))


class LogView(ScrollView, can_focus=True, inherit_bindings=False):
    DEFAULT_CSS = """
    LogView { background: $surface; overflow-y: scroll; overflow-x: auto; }
    LogView:focus { background-tint: $foreground 4%; }
    """

    # ScrollView's own keys, except that ← → stay the console's (previous / next process)
    # whether or not a long line makes this log scroll sideways: shift+← → scroll it.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "scroll_up", "Scroll up", show=False),
        Binding("down", "scroll_down", "Scroll down", show=False),
        Binding("shift+left", "scroll_left", "Scroll left", show=False),
        Binding("shift+right", "scroll_right", "Scroll right", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "resume", "Follow", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
    ]

    wrap: reactive[bool] = reactive(False)

    def __init__(self, ring: Ring, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ring = ring
        self.follow = True
        self.search_term = ""
        self._first = ring.first_seq  # the ring as of the last sync
        self._next = ring.first_seq
        self._widest = 0
        self._heights: list[int] = []  # wrapped rows per kept line (wrap mode only)
        self._offsets: list[int] = []  # first row of each kept line (wrap mode only)
        self._cache: LRUCache[tuple[int, int, str], list[Strip]] = LRUCache(_MIN_CACHED)
        self._adjusting = False

    # -- keeping up with the ring ------------------------------------------------------------

    def sync(self) -> bool:
        """Catch up with the ring: drop evicted lines, measure new ones, keep the view put.

        False when nothing changed since the last call."""
        ring = self.ring
        first, nxt = ring.first_seq, ring.next_seq
        if (first, nxt) == (self._first, self._next):
            return False
        evicted = min(first, self._next) - self._first
        new = ring.since(max(self._next, first))
        removed_rows = self._forget(evicted)
        self._measure(new)
        self._first, self._next = first, nxt
        self._resize()
        self._adjusting = True
        try:
            if self.follow:
                self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            elif removed_rows:
                self.scroll_to(
                    y=max(0, self.scroll_y - removed_rows), animate=False, immediate=True
                )
        finally:
            self._adjusting = False
        self.refresh()
        return True

    def _forget(self, lines: int) -> int:
        if lines <= 0:
            return 0
        if not self.wrap:
            return lines
        rows = sum(self._heights[:lines])
        del self._heights[:lines]
        return rows

    def _measure(self, lines: list[Line]) -> None:
        widths = [cells(line.text) + 2 for line in lines]
        if widths:
            self._widest = max(self._widest, *widths)
        if self.wrap:
            width = max(1, self.scrollable_content_region.width)
            self._heights.extend(max(1, -(-w // width)) for w in widths)

    def _resize(self) -> None:
        if self.wrap:
            self._offsets = [0, *accumulate(self._heights)]
            rows = self._offsets[-1]
            self.virtual_size = Size(self.scrollable_content_region.width, rows)
        else:
            self.virtual_size = Size(self._widest, len(self.ring))

    def _remeasure(self) -> None:
        self._heights = []
        self._first = self.ring.first_seq
        self._measure(self.ring.since(self._first))
        self._next = self.ring.next_seq
        self._resize()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        self.refresh()

    def watch_wrap(self) -> None:
        self._cache.clear()
        self._remeasure()

    def on_resize(self) -> None:
        """A pane that grows or shrinks keeps showing the newest lines when following."""
        # Drawn lines are kept for the rows on screen, and as many again for scrolling back.
        # Sized in lines whatever the view, the cache outgrew the ring by far: 2048 lines of
        # 16 KiB of coloured text held 438 MB for one pane, where the ring keeps 4 M characters.
        wanted = max(_MIN_CACHED, 2 * self.size.height)
        if self._cache.maxsize != wanted:
            self._cache = LRUCache(wanted)
        if self.wrap:
            self._cache.clear()
            self._remeasure()
        elif self.follow:
            self._adjusting = True
            try:
                self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            finally:
                self._adjusting = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        """Scrolling up leaves follow mode, scrolling down to the bottom again resumes it.
        Only a move down resumes: a search that lands on the last screen stays put."""
        super().watch_scroll_y(old, new)
        if self._adjusting:
            return
        if new > old and new >= self.max_scroll_y:
            self.follow = True
        elif new < old:
            self.follow = False

    # -- what the pane shows about the view --------------------------------------------------

    @property
    def waiting(self) -> int:
        """Lines below the bottom of the view while not following."""
        if self.follow:
            return 0
        bottom = self._row_seq(int(self.scroll_y) + self.size.height - 1)
        return max(0, self.ring.next_seq - 1 - bottom)

    def action_resume(self) -> None:
        self.resume()

    def resume(self) -> None:
        self.follow = True
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def visible_text(self) -> str:
        top = self._row_seq(int(self.scroll_y))
        bottom = self._row_seq(int(self.scroll_y) + self.size.height - 1)
        return "\n".join(plain(line.text) for line in self.ring.since(top, bottom - top + 1))

    # -- search ------------------------------------------------------------------------------

    def find(self, term: str, forward: bool = True) -> bool:
        """Move to the next (or previous) line containing term; False when there is none."""
        self.search_term = term
        self._cache.clear()
        self.refresh()
        if not term:
            return False
        needle = term.casefold()
        current = self._row_seq(int(self.scroll_y) + self.size.height // 2)
        lines = self.ring.since(self.ring.first_seq)
        order = (
            [ln for ln in lines if ln.seq > current] + [ln for ln in lines if ln.seq <= current]
            if forward
            else [ln for ln in reversed(lines) if ln.seq < current]
            + [ln for ln in reversed(lines) if ln.seq >= current]
        )
        for line in order:
            if needle in plain(line.text).casefold():
                self.follow = False
                row = self._seq_row(line.seq)
                self._adjusting = True
                try:
                    self.scroll_to(
                        y=max(0, row - self.size.height // 2), animate=False, immediate=True
                    )
                finally:
                    self._adjusting = False
                return True
        return False

    # -- drawing -----------------------------------------------------------------------------

    def _row_seq(self, row: int) -> int:
        if not self.wrap:
            return self.ring.first_seq + row
        index = max(0, bisect.bisect_right(self._offsets, row) - 1)
        return self._first + index

    def _seq_row(self, seq: int) -> int:
        index = seq - self._first
        return self._offsets[index] if self.wrap and index < len(self._offsets) else index

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        style = self.rich_style
        if self.wrap:
            index = bisect.bisect_right(self._offsets, row) - 1
            line = self.ring.at(self._first + index) if index >= 0 else None
            if line is None:
                return Strip.blank(width, style)
            strips = self._strips(line, width)
            sub = row - self._offsets[index]
            strip = strips[sub] if sub < len(strips) else Strip.blank(width, style)
            return strip.apply_style(style).extend_cell_length(width, style)
        line = self.ring.at(self.ring.first_seq + row)
        if line is None:
            return Strip.blank(width, style)
        (strip,) = self._strips(line, 0)
        # The widget's colours under the line's own: SGR colours win, the background is ours.
        return strip.apply_style(style).crop_extend(scroll_x, scroll_x + width, style)

    def _strips(self, line: Line, wrap_width: int) -> list[Strip]:
        key = (line.seq, wrap_width, self.search_term)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        gutter, gutter_style = _GUTTER.get(line.stream, _GUTTER["out"])
        text = Text(gutter, style=gutter_style, no_wrap=True, end="")
        # Tabs are expanded after the colours are parsed: expanding the raw text would count
        # each SGR sequence's characters as columns, and the tab stops (and the row count
        # measured by cells()) would be wrong for coloured lines.
        body = Text.from_ansi(line.text, no_wrap=True, end="")
        body.expand_tabs(8)
        if line.stream == "sys":
            body.stylize(_SYS_STYLE)
        if self.search_term:
            body.highlight_regex(re.compile(re.escape(self.search_term), re.I), _MATCH_STYLE)
        text.append_text(body)
        strip = Strip(text.render(self.app.console))
        if wrap_width:  # fold at the cell, so a line takes exactly the rows measured for it
            length = strip.cell_length
            strips = list(strip.divide([*range(wrap_width, length, wrap_width), length]))
        else:
            strips = [strip]
        self._cache[key] = strips
        return strips
