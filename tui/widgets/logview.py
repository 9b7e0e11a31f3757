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
from array import array
from collections.abc import Callable
from itertools import accumulate
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollDown, ScrollTo, ScrollUp
from textual.strip import Strip

from tui.engine.output import Line, Ring, uncoloured

# Invisible in a cell but kept by a paste: soft hyphen, zero-width space and word joiner,
# invisible operators, byte order mark, tag characters. Not ZWJ / ZWNJ: emoji and scripts need
# them. Bidi controls never get this far (the sanitiser removes them).
_INVISIBLE = re.compile("[\u00ad\u180e\u200b\u2060-\u2064\ufeff\U000e0000-\U000e007f]")
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
    text = uncoloured(text)
    if "\t" not in text:
        return text
    shown = Text(text)
    shown.expand_tabs(8)
    return shown.plain


def readable(text: str) -> str:
    """A line as a reader sees it, for copying: `plain`, without its concealed (SGR 8) runs
    and invisible characters. A child can hide "; curl … | sh" in a line that looks harmless;
    what is pasted must be what was seen."""
    if "\x1b" in text:
        body = Text.from_ansi(text)
        shown, start = [], 0
        for span in body.spans:  # one per run of one style: they do not overlap
            if isinstance(span.style, Style) and span.style.conceal:
                shown.append(body.plain[start : span.start])
                start = span.end
        text = "".join(shown) + body.plain[start:]
    return _INVISIBLE.sub("", plain(text))


def cells(text: str) -> int:
    """Cells a line takes; most lines are plain ASCII, measured without any work."""
    if text.isascii() and "\x1b" not in text and "\t" not in text:
        return len(text)
    return cell_len(plain(text))


class LogView(ScrollView, can_focus=True, inherit_bindings=False):
    """Follows the newest line until the user scrolls up; End follows again.

    Following is the user's decision, so only the handlers of the user's input change it:
    keys, the mouse wheel, the scrollbar, End and searches (toolong's rule for tailing). It is
    never read from ``scroll_y``: Textual clamps that on every layout (a resize, a zoom, a
    banner appearing or going), and a clamp is not the user scrolling. Textual's own anchor is
    not used for the same reason: it re-engages whenever a clamp lands on the bottom.
    """

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
        self._pattern: re.Pattern[str] | None = None
        # The seq of every match in the lines taken from the ring, once per match, in order;
        # evicted ones are dropped as the ring moves on. An array: a one-letter search of a
        # full ring finds millions.
        self._hits = array("q")
        self._match: tuple[int, int] | None = None  # current match: seq, and which in its line
        self._first = ring.first_seq  # the ring as of the last sync
        self._next = ring.first_seq
        self._widest = 0
        self._heights: list[int] = []  # wrapped rows per kept line (wrap mode only)
        self._offsets: list[int] = []  # first row of each kept line (wrap mode only, else [])
        self._cache: LRUCache[tuple[int, int, str], list[Strip]] = LRUCache(_MIN_CACHED)

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
        if self._pattern is not None:
            del self._hits[: bisect.bisect_left(self._hits, first)]
            self._find_in(new)
        self._first, self._next = first, nxt
        self._resize()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif removed_rows:
            self.scroll_to(y=max(0, self.scroll_y - removed_rows), animate=False, immediate=True)
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
            self._offsets = []
            self.virtual_size = Size(self._widest, len(self.ring))

    def _remeasure(self) -> None:
        """Measure every kept line again (wrap toggled, or the width changed) and keep the view
        where it was: at the bottom when following, else on the current match if it was in
        view, else on the line at the top. The old row map is still in place until here."""
        top = self._row_seq(int(self.scroll_y))
        bottom = self._row_seq(int(self.scroll_y) + self.size.height - 1)
        on_match = self._match is not None and top <= self._match[0] <= bottom
        self._heights = []
        self._first = self.ring.first_seq
        self._measure(self.ring.since(self._first, self._next - self._first))
        self._resize()
        if self.follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif on_match:
            self._show_match()
        else:
            self.scroll_to(x=0, y=self._seq_row(top), animate=False, immediate=True)
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
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    # -- the user moving the view: the only place following changes -----------------------

    def _user_moved(self, before: float) -> None:
        """After a move by the user: a move that left the view above the bottom stops
        following, a move down to the bottom follows again, anything else changes nothing
        (e.g. Up in a log shorter than its pane)."""
        target = self.scroll_target_y
        self.follow = target >= self.max_scroll_y and (self.follow or target > before)

    def _before_user_move(self) -> float:
        # Where the view was headed; a clamp moves scroll_y and leaves the target behind.
        return min(self.scroll_target_y, self.max_scroll_y)

    def _user_moves(self, move: Callable[[], object]) -> None:
        before = self._before_user_move()
        move()
        self._user_moved(before)

    def action_scroll_up(self) -> None:
        self._user_moves(super().action_scroll_up)

    def action_scroll_down(self) -> None:
        self._user_moves(super().action_scroll_down)

    def action_page_up(self) -> None:
        self._user_moves(super().action_page_up)

    def action_page_down(self) -> None:
        self._user_moves(super().action_page_down)

    def action_scroll_home(self) -> None:
        self._user_moves(super().action_scroll_home)

    def _after_user_event(self) -> None:
        """Wheel and scrollbar events reach this class before Textual moves the view: judge
        the move once the event has been handled."""
        self.call_next(self._user_moved, self._before_user_move())

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._after_user_event()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._after_user_event()

    def on_scroll_to(self, message: ScrollTo) -> None:  # dragging the scrollbar
        self._after_user_event()

    def on_scroll_up(self, message: ScrollUp) -> None:  # a click on the scrollbar
        self._after_user_event()

    def on_scroll_down(self, message: ScrollDown) -> None:
        self._after_user_event()

    def action_resume(self) -> None:
        self.resume()

    def resume(self) -> None:
        self.follow = True
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    # -- what the pane shows about the view --------------------------------------------------

    @property
    def waiting(self) -> int:
        """Lines below the bottom of the view while not following."""
        if self.follow:
            return 0
        bottom = self._row_seq(int(self.scroll_y) + self.size.height - 1)
        return max(0, self.ring.next_seq - 1 - bottom)

    @property
    def search_status(self) -> str | None:
        """Where the search is: "match 3 of 17", or how many matches there are."""
        if self._pattern is None:
            return None
        live = bisect.bisect_left(self._hits, self.ring.first_seq)
        total = len(self._hits) - live
        index = self._match_index()
        if index is not None and index >= live:
            return f"match {index - live + 1} of {total}"
        return f"{total} matches" if total != 1 else "1 match"

    def visible_text(self) -> str:
        top = self._row_seq(int(self.scroll_y))
        bottom = self._row_seq(int(self.scroll_y) + self.size.height - 1)
        return "\n".join(readable(line.text) for line in self.ring.since(top, bottom - top + 1))

    # -- search ------------------------------------------------------------------------------

    def find(self, term: str, forward: bool = True) -> bool:
        """Move to the next (or previous) match; False when there is none.

        A new term starts from the middle of the view. Every match is a step, several in one
        line too, and the view moves to show it: down to its line, sideways to it in a long
        line. A search is the user moving the view: it stops following."""
        if term != self.search_term:
            self._search(term)
        hits = self._hits
        live = bisect.bisect_left(hits, self.ring.first_seq)
        if not term or live == len(hits):
            return False
        index = self._match_index()
        if index is None or index < live:  # a new search, or its match was evicted
            middle = self._row_seq(int(self.scroll_y) + self.size.height // 2)
            index = bisect.bisect_right(hits, middle)  # the first match below the middle line
            if not forward:
                index = bisect.bisect_left(hits, middle) - 1  # the last one above it
        else:
            index += 1 if forward else -1
        if index >= len(hits) or index < live:  # round the ends
            index = live if forward else len(hits) - 1
        seq = hits[index]
        self._match = (seq, index - bisect.bisect_left(hits, seq))
        self.follow = False
        self._show_match()
        return True

    def _search(self, term: str) -> None:
        """A new term (an empty one ends the search): find its matches in every line taken
        from the ring so far; sync finds them in the lines that come after."""
        self.search_term = term
        self._pattern = re.compile(re.escape(term), re.IGNORECASE) if term else None
        self._hits = array("q")
        self._match = None
        self._cache.clear()
        self.refresh()
        if self._pattern is not None:
            start = self.ring.first_seq
            self._find_in(self.ring.since(start, self._next - start))

    def _find_in(self, lines: list[Line]) -> None:
        assert self._pattern is not None
        for line in lines:
            found = len(self._pattern.findall(plain(line.text)))
            if found:
                self._hits.extend([line.seq] * found)

    def _match_index(self) -> int | None:
        if self._match is None:
            return None
        seq, nth = self._match
        return bisect.bisect_left(self._hits, seq) + nth

    def _show_match(self) -> None:
        """Scroll so the current match is on screen: its row mid-view, and sideways when it
        lies beyond either edge of a long line (wrapped, its row within the line instead)."""
        assert self._match is not None and self._pattern is not None
        seq, nth = self._match
        line = self.ring.at(seq)
        if line is None:
            return
        text = plain(line.text)
        found = list(self._pattern.finditer(text))[nth]
        start = 2 + cell_len(text[: found.start()])  # after the gutter
        end = start + cell_len(found.group())
        width = self.scrollable_content_region.width
        row = self._seq_row(seq)
        x: float | None = None
        if self.wrap:
            row += start // max(1, width)
        elif start < self.scroll_x or end > self.scroll_x + width:
            x = max(0, start - width // 4)  # a little of what comes before it too
            if end > x + width:
                x = max(0, min(start, end - width))
        y = max(0, row - self.size.height // 2)
        # Forced: right after wrap is turned off, Textual allows no sideways scrolling until
        # its next layout has shown the horizontal scrollbar.
        self.scroll_to(x=x, y=y, animate=False, immediate=True, force=True)

    # -- drawing -----------------------------------------------------------------------------

    def _row_seq(self, row: int) -> int:
        if not self._offsets:
            return self.ring.first_seq + row
        index = max(0, bisect.bisect_right(self._offsets, row) - 1)
        return self._first + index

    def _seq_row(self, seq: int) -> int:
        if not self._offsets:
            return seq - self.ring.first_seq
        index = seq - self._first
        return self._offsets[min(max(0, index), len(self._offsets) - 1)]

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
        if self._pattern is not None:
            body.highlight_regex(self._pattern, _MATCH_STYLE)
        text.append_text(body)
        strip = Strip(text.render(self.app.console))
        if wrap_width:  # fold at the cell, so a line takes exactly the rows measured for it
            length = strip.cell_length
            strips = list(strip.divide([*range(wrap_width, length, wrap_width), length]))
        else:
            strips = [strip]
        self._cache[key] = strips
        return strips
