"""Hostile child output through the whole path a byte takes to a screen: sanitiser, ring, log
widget and headless writer.

tests/test_output.py proves the sanitiser alone (any bytes, any chunking, same lines). Here the
input is shaped like real attacks (escape sequences of every family, 7-bit and 8-bit, cut
across reads; markup; NUL floods; CR storms; huge lines) and the question is what finally
leaves the process: the strings Textual writes for each row, and the bytes the headless mode
writes. Only SGR colour may reach a terminal; everything else must arrive as inert text.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import FIXTURES, fixture_argv
from helpers import command, until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.strip import Strip
from textual.widgets._toast import Toast

from tui.app import ConsoleApp
from tui.engine.local import LocalEngine
from tui.engine.output import Line, Ring, Sanitiser
from tui.engine.supervisor import Supervisor
from tui.headless import Printer
from tui.widgets.logview import LogView, cells, plain

SGR = re.compile(r"\x1b\[[0-9;:]*m")
# What a terminal acts on: every C0 (TAB included: the widget expands it), DEL, every C1, and
# the bidi controls (a terminal that orders text right-to-left reorders the line around them).
REPO = Path(__file__).resolve().parent.parent
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- what a hostile child prints -------------------------------------------------------------

params = st.text(alphabet="0123456789;:?<=>", max_size=12).map(str.encode)
payload = st.binary(max_size=24).filter(lambda b: b"\n" not in b)
terminator = st.sampled_from([b"\x07", b"\x1b\\", b"\xc2\x9c", b""])  # BEL, ST, 8-bit ST, none

csi = st.builds(
    lambda intro, p, i, f: intro + p + i + f,
    st.sampled_from([b"\x1b[", b"\xc2\x9b"]),  # 7-bit and 8-bit CSI (C1 as UTF-8)
    params,
    st.sampled_from([b"", b" ", b"!", b"$", b"'"]),
    st.sampled_from([b"A", b"B", b"H", b"J", b"K", b"m", b"h", b"l", b"n", b"c", b"q", b"~", b""]),
)
osc = st.builds(
    lambda intro, body, end: intro + body + end,
    st.sampled_from([b"\x1b]", b"\xc2\x9d"]),
    st.one_of(
        st.sampled_from(
            [b"0;pwned", b"2;title", b"52;c;ZWNobyBwd25lZA==", b"8;;https://x.example"]
        ),
        payload,
    ),
    terminator,
)
string_sequence = st.builds(  # DCS, SOS, PM, APC: 7-bit and 8-bit introducers
    lambda intro, body, end: intro + body + end,
    st.sampled_from(
        [b"\x1bP", b"\x1bX", b"\x1b^", b"\x1b_", b"\xc2\x90", b"\xc2\x98", b"\xc2\x9e", b"\xc2\x9f"]
    ),
    st.one_of(st.just(b"q#0;2;0;0;0#0~~@@vv"), st.just(b"$q m"), payload),
    terminator,
)
short_escape = st.sampled_from(
    [b"\x1bc", b"\x1b7", b"\x1b8", b"\x1bD", b"\x1bM", b"\x1b(B", b"\x1b#8", b"\x1b%G", b"\x1b"]
)
paste = st.sampled_from([b"\x1b[200~", b"\x1b[201~", b"\x1b[200~rm -rf /\r\x1b[201~"])
sgr = st.builds(lambda p: b"\x1b[" + p + b"m", st.text("0123456789;:", max_size=16).map(str.encode))
markup = st.sampled_from(
    [
        "[bold]",
        "[/]",
        "[/bold]",
        "[link=https://evil.example]x[/link]",
        "[@click=app.quit]click[/]",
        "[on red",
        "[[",
        "]]",
        "\\[",
        "[b]x[/i]",
        ":rocket:",
        "$x",
    ]
).map(str.encode)
unicode_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
).map(str.encode)
special = st.sampled_from(  # line and paragraph separators, bidi overrides, zero width, wide
    ["\u2028", "\u2029", "\u202e", "\u200b", "\ufeff", "\u0301", "界", "😀", "\ufffd"]
).map(str.encode)
flood = st.builds(
    bytes.__mul__,
    st.sampled_from([b"\x00", b"\r", b"\x1b", b"\x9b", b"\x07"]),
    st.integers(1, 3000),
)
atom = st.one_of(
    csi,
    osc,
    string_sequence,
    short_escape,
    paste,
    sgr,
    markup,
    unicode_text,
    special,
    flood,
    st.binary(max_size=8),
    st.sampled_from([b"\n", b"\r\n", b"\r", b"\t", b"text "]),
)
hostile = st.lists(atom, max_size=30).map(b"".join)


def chunks(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """The reads a pipe might return: sequences and UTF-8 characters cut anywhere."""
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return (data[a:b] for a, b in pairwise(edges))


def sanitised(data: bytes, cuts: list[int], max_line: int) -> tuple[list[str], Sanitiser]:
    s = Sanitiser(max_line)
    lines: list[str] = []
    for piece in chunks(data, cuts):
        lines += s.feed(piece)
        assert len(s._tail) <= max_line  # the pending line never outgrows one piece
    return lines + s.flush(), s


def assert_terminal_safe(out: str) -> None:
    """After the SGR sequences (the only ones allowed), nothing a terminal would act on.

    A TAB only moves to the next tab stop; the widget expands it, the headless mode keeps it."""
    rest = SGR.sub("", out).replace("\t", " ")
    assert not CONTROL.search(rest), repr(out)


# --- sanitiser and ring: bounds and what comes out -----------------------------------------------


@FAST
@given(
    data=hostile,
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    max_line=st.integers(min_value=1, max_value=200),
    max_lines=st.integers(min_value=1, max_value=20),
    max_chars=st.integers(min_value=1, max_value=500),
)
@example(data=b"\x1b]0;title\x1b\\" * 3 + b"\n", cuts=[5], max_line=4, max_lines=1, max_chars=1)
def test_hostile_output_stays_within_the_ring_bounds(
    data: bytes, cuts: list[int], max_line: int, max_lines: int, max_chars: int
) -> None:
    lines, _ = sanitised(data, cuts, max_line)
    ring = Ring(max_lines=max_lines, max_chars=max_chars)
    for line in lines:  # one read at a time, as the reader appends them
        ring.append("out", [line])
        kept = ring.since(0)
        assert len(kept) <= max_lines
        # Characters are bounded by max_chars, except that the newest line is always kept.
        assert sum(len(k.text) for k in kept) <= max(max_chars, len(kept[-1].text))
    assert ring.next_seq == len(lines)
    assert ring.dropped + len(ring) == len(lines)
    for line in lines:
        assert len(line) <= max_line
        assert_terminal_safe(line)


# --- the log widget: what Textual writes for each row -------------------------------------------


class OneLog(App[None]):
    """The real widget in a real (headless) app: its console and sizes are Textual's own."""

    def __init__(self, ring: Ring) -> None:
        super().__init__()
        self.ring = ring

    def compose(self) -> ComposeResult:
        yield LogView(self.ring)


def drawn(view: LogView) -> list[Strip]:
    """Every row on screen, through render_line as Textual's compositor calls it."""
    return [view.render_line(y) for y in range(view.size.height)]


def line_strips(view: LogView, line: Line) -> list[Strip]:
    """A whole line as the widget draws it, unclipped by the screen (what render_line crops)."""
    return view._strips(line, 0)


def check_strips(view: LogView, strips: list[Strip]) -> None:
    console = view.app.console
    for strip in strips:
        for segment in strip:
            assert isinstance(segment, Segment)
            assert not segment.control, segment
            assert not CONTROL.search(segment.text), repr(segment.text)
            assert segment.style is None or segment.style.link is None, segment  # no OSC 8
        assert_terminal_safe(strip.render(console))


def check_literal(view: LogView, line: Line) -> None:
    """Markup is data: the cells show exactly the line's characters, colours aside."""
    gutter = {"out": "  ", "err": "▌ ", "sys": "» "}[line.stream]
    text = "".join(segment.text for strip in line_strips(view, line) for segment in strip)
    assert text == gutter + plain(line.text)
    # Wrapped, it takes exactly the rows it was measured for: no row lost, none overlapping.
    width = view.scrollable_content_region.width
    rows = view._strips(line, width)
    assert len(rows) == max(1, -(-(cells(line.text) + 2) // width)), (line.text, width)


async def test_hostile_output_is_drawn_as_inert_text() -> None:
    ring = Ring(max_lines=50, max_chars=20_000)
    app = OneLog(ring)
    async with app.run_test(size=(100, 20)):
        view = app.query_one(LogView)

        # Hypothesis inside the running app: one app start serves every example, and the
        # ring is shared, so later examples also exercise eviction under the view.
        @FAST
        @given(
            data=hostile,
            cuts=st.lists(st.integers(min_value=0), max_size=6),
            stream=st.sampled_from(["out", "err", "sys"]),
            wrap=st.booleans(),
            term=st.one_of(st.just(""), markup.map(bytes.decode), st.text(max_size=3)),
        )
        @example(
            data=b"[@click=app.quit]quit[/] [bold]x[/] [link=https://e.x]l[/link] [on red\n",
            cuts=[],
            stream="out",
            wrap=False,
            term="[/]",
        )
        @example(data=b"a\xe2\x80\xa8b\xe2\x80\xa9c\n", cuts=[], stream="out", wrap=True, term="")
        @example(data=b"\t\x1b[31m\tx\x9b2J\n", cuts=[4], stream="err", wrap=True, term="x")
        def check(data: bytes, cuts: list[int], stream: str, wrap: bool, term: str) -> None:
            lines, _ = sanitised(data, cuts, 300)
            ring.append(stream, lines)
            view.wrap = wrap
            view.find(term)
            view.resume()
            view.sync()
            check_strips(view, drawn(view))
            for line in ring.since(ring.first_seq):
                check_strips(view, line_strips(view, line))
                check_literal(view, line)

        check()
        assert app.is_running  # no [@click=app.quit] was acted on


async def test_a_10mb_hostile_line_is_cut_bounded_and_drawn_inert() -> None:
    """One 10 MB line mixing every family of escape, read in 64 KiB pieces."""
    unit = (
        b"\x1b]0;t\x07\x1b[2J\x1b[31mred\x1b[0m\x00\x00\r\x9b5A[bold]\xc2\x9b31m"
        b"\x1bP$q\x1b\\\xe2\x80\xa8\xff"
    )
    data = unit * (10 * 1024 * 1024 // len(unit))
    max_line, max_lines, max_chars = 16384, 100, 400_000
    s, ring = Sanitiser(max_line), Ring(max_lines=max_lines, max_chars=max_chars)
    for i in range(0, len(data), 65536):
        ring.append("out", s.feed(data[i : i + 65536]))
        assert len(s._tail) <= max_line
    ring.append("out", s.flush())
    kept = ring.since(0)
    assert ring.next_seq > max_lines and len(kept) <= max_lines
    assert sum(len(line.text) for line in kept) <= max_chars
    app = OneLog(ring)
    async with app.run_test(size=(80, 24)):
        view = app.query_one(LogView)
        view.sync()
        check_strips(view, drawn(view))
        view.wrap = True
        check_strips(view, drawn(view))
        for line in kept[-3:]:
            check_strips(view, line_strips(view, line))
            check_literal(view, line)


# --- the headless writer: the bytes that reach a terminal or a log file -----------------------


async def printed(lines: list[Line], colour: bool) -> bytes:
    """What --headless writes for these lines, read back from a real pipe."""
    read_end, write_end = os.pipe()
    try:
        engine = LocalEngine(Supervisor([command("web", ["true"])], watchdog=False))
        printer = Printer(engine, write_end, colour, on_broken=lambda: None)
        for line in lines:
            engine.output("web").append(line.stream, [line.text])
        printer.on_lines("web")
        drained = await asyncio.get_running_loop().run_in_executor(None, printer.outlet.drain, 10)
        assert drained, "the writer did not drain"
        os.close(write_end)
        write_end = -1
        out = b""
        while chunk := os.read(read_end, 65536):
            out += chunk
        return out
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


async def test_headless_output_is_one_inert_line_per_line() -> None:
    @FAST
    @given(data=hostile, cuts=st.lists(st.integers(min_value=0), max_size=6))
    @example(data=b"[bold]x\x1b]0;t\x07\rok\n\x1b[31mred\n", cuts=[9])
    def collect(data: bytes, cuts: list[int]) -> None:
        texts, _ = sanitised(data, cuts, 500)
        examples.append([Line(i, "out", text, 0.0) for i, text in enumerate(texts)])

    examples: list[list[Line]] = []
    collect()  # the writer needs the running loop, so examples are printed after generation
    for lines in examples:
        for colour in (False, True):
            out = (await printed(lines, colour)).decode("utf-8")
            rows = out.split("\n")
            assert rows.pop() == ""  # every row ends with its newline
            assert len(rows) == len(lines)  # a child cannot forge a line of its own
            for row, line in zip(rows, lines, strict=True):
                if colour:
                    assert_terminal_safe(row)
                else:
                    # No escape at all in a file or pipe; a TAB is text there.
                    assert not CONTROL.search(row.replace("\t", " ")), repr(row)
                    assert row.endswith(" web | " + SGR.sub("", line.text))


# --- the console: markup in a search term or a name is text in every notice ---------------------


async def test_markup_in_search_terms_and_names_is_never_interpreted() -> None:
    """Notices render markup unless told not to; a search for "[/]" (a line of the hostile
    fixture holds it) or an entry named like a tag must show as typed and crash nothing."""
    name = "[b]web[/]"
    sup = Supervisor([command(name, fixture_argv("hostile_output"))], watchdog=False)
    app = ConsoleApp(LocalEngine(sup, "test.settings"), host="testhost")
    try:
        async with app.run_test(size=(160, 48), notifications=True) as pilot:
            await until(lambda: any("END" in ln.text for ln in sup[name].ring.since(0)))
            for term in ["[/]", "[@click=app.quit]never[/]", "[/bold]"]:
                await pilot.press("slash", *term, "enter")
                await pilot.pause(0.2)
                await pilot.press("n")  # the next match, or a notice that there is none
                await pilot.pause(0.2)
            notice = f"'[@click=app.quit]never[/]' not found in {name}"
            await until(
                lambda: any(notice in str(t.render()) for t in app.screen.query(Toast)),
                what="the notice, drawn as typed",
            )
            assert app.is_running and app.return_code is None
    finally:
        sup.kill_all()
        await sup.stop_all()


# --- the real command: what --headless writes to a pipe and to a terminal ------------------------


END = re.compile(rb"\|(?:\x1b\[0m)? END")  # the prefix ends in a colour reset on a terminal


def headless_output(tmp_path: Path, tty: bool) -> bytes:
    """Run ``prodserver-tui --headless`` over the hostile corpus until END; all it wrote."""
    corpus = [sys.executable, str(FIXTURES / "hostile_corpus.py")]
    (tmp_path / "s.py").write_text(
        f"SECRET_KEY = 'x'\nPRODUCTION_PROCESSES = {{'corpus': {{"
        f"'BACKEND': 'backends.command.Command', 'ARGS': {corpus!r}}}}}\n"
    )
    read_fd, write_fd = pty.openpty() if tty else os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--headless", "--settings", "s"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=write_fd,
        stderr=write_fd,
        start_new_session=True,
    )
    os.close(write_fd)
    out = b""
    deadline = time.monotonic() + 90
    try:
        while not END.search(out):
            assert time.monotonic() < deadline and proc.poll() is None, out[-2000:]
            ready, _, _ = select.select([read_fd], [], [], 1.0)
            if ready:
                out += os.read(read_fd, 1 << 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        os.close(read_fd)
    return out


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_headless_passes_nothing_but_colour_to_a_terminal(tmp_path: Path, tty: bool) -> None:
    text = headless_output(tmp_path, tty).decode("utf-8")  # strict: valid UTF-8 only
    if tty:
        text = text.replace("\r\n", "\n")  # the terminal's own line discipline (onlcr)
    else:
        assert "\x1b" not in text  # no colour at all into a pipe
    assert_terminal_safe(text.replace("\n", " "))
    for marker in ["cursor", "hyperlink", "bracketed paste", "8-bit C1", "after a NUL flood"]:
        assert marker in text, marker
    assert "[@click=app.quit]x[/]" in text


async def test_the_widget_keeps_drawn_lines_only_for_about_the_rows_on_screen() -> None:
    """The ring bounds what is kept; the widget's drawn lines must not outgrow it. Strips of
    a 16 KiB line changing colour every 8 characters cost ~200 KB each: kept for 2048 lines
    whatever the view, one followed pane held 438 MB (tracemalloc) while its ring held 4 M
    characters; kept for twice the rows on screen, 17 MB. Counted here in lines, cheaply."""
    ring = Ring()
    app = OneLog(ring)
    async with app.run_test(size=(120, 40)):
        view = app.query_one(LogView)
        for i in range(300):  # 6000 lines, followed as they come, 20 per refresh
            ring.append("out", [f"\x1b[3{i % 8}mline {i}\x1b[0m"] * 20)
            view.sync()
            drawn(view)
        assert len(view._cache) <= max(32, 2 * view.size.height)
