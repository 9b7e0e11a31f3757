"""Child output is hostile: nothing a terminal acts on gets through but SGR colour, and the ring
stays bounded whatever a child prints."""

from __future__ import annotations

import re
import time
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.engine.output import Line, Ring, Sanitiser, clean

SGR = re.compile(r"\x1b\[[0-9;:]*m")
KIB64 = 64 * 1024


def run(data: bytes, max_line: int = 16384, chunk: int = KIB64) -> list[str]:
    """Everything a Sanitiser makes of data, fed in chunks of the given size, then flushed."""
    s = Sanitiser(max_line)
    lines: list[str] = []
    for i in range(0, len(data), chunk):
        lines += s.feed(data[i : i + chunk])
    return lines + s.flush()


# --- lines and decoding ---------------------------------------------------------------------


def test_lines_are_split_on_newline_and_the_tail_waits_for_the_next_feed() -> None:
    s = Sanitiser()
    assert s.feed(b"one\ntwo\nthr") == ["one", "two"]
    assert s.feed(b"ee") == []
    assert s.feed(b"\n\nfour\n") == ["three", "", "four"]
    assert s.flush() == []


def test_a_multibyte_character_split_across_feeds_decodes_whole() -> None:
    s = Sanitiser()
    assert s.feed(b"caf\xc3") == []
    assert s.feed(b"\xa9 \xf0\x9f") == []
    assert s.feed(b"\x98") == []
    assert s.feed(b"\x80\n") == ["café 😀"]


def test_invalid_utf8_becomes_the_replacement_character() -> None:
    assert run(b"a\xffb\xc3(c\xed\xa0\x80d\n") == ["a\ufffdb\ufffd(c\ufffd\ufffd\ufffdd"]


def test_a_truncated_character_at_eof_is_replaced_not_lost() -> None:
    s = Sanitiser()
    assert s.feed(b"x\xe2\x82") == []
    assert s.flush() == ["x\ufffd"]


def test_flush_emits_the_unterminated_tail_once() -> None:
    s = Sanitiser()
    assert s.feed(b"done\nno newline") == ["done"]
    assert s.flush() == ["no newline"]
    assert s.flush() == []


def test_flush_drops_a_tail_that_cleans_to_nothing() -> None:
    s = Sanitiser()
    assert s.feed(b"done\n\x1b[?25h") == ["done"]
    assert s.flush() == []


def test_a_line_that_cleans_to_nothing_is_still_a_line() -> None:
    assert run(b"a\n\x1b[2J\x07\nb\n") == ["a", "", "b"]


# --- carriage returns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abc\r\n", ["abc"]),
        (b"\r\n\r\n", ["", ""]),
        (b"10%\r20%\r30%\n", ["30%"]),
        (b"abc\r", ["abc"]),  # flushed at EOF
        (b"one\r\r\n", ["one"]),
        (b"long text\rshort\n", ["short"]),
        (b"\x1b[32m50%\x1b[0m\r\x1b[32m60%\x1b[0m\r\n", ["\x1b[32m60%\x1b[0m"]),
        (b"50%\r\x1b[K\n", ["50%"]),  # sequences go first: a bare erase does not blank the line
    ],
)
def test_carriage_returns_keep_the_last_drawing(data: bytes, expected: list[str]) -> None:
    assert run(data) == expected


def test_crlf_split_across_feeds() -> None:
    s = Sanitiser()
    assert s.feed(b"abc\r") == []
    assert s.feed(b"\ndef\r\n") == ["abc", "def"]


def test_a_carriage_return_storm_is_one_line() -> None:
    storm = b"".join(b"%d/1000\r" % i for i in range(1000))
    assert run(storm + b"done\n", chunk=7) == ["done"]
    assert run(storm + b"\n") == ["999/1000"]


def test_a_storm_longer_than_max_line_keeps_the_last_drawing_of_each_piece() -> None:
    assert run(b"1\r2\r3\r4\r\n", max_line=4) == ["2", "4"]


# --- control sequences --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # OSC: window title, hyperlink, clipboard; BEL or ST terminated, or to the end of line
        ("\x1b]0;pwned\x07after", "after"),
        ("\x1b]2;pwned\x1b\\after", "after"),
        ("\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b]52;c;ZWNobyBwd25lZA==\x07", ""),
        ("before\x1b]0;never terminated", "before"),
        ("\x1b]0;t\x1b[31mred", "\x1b[31mred"),  # an ESC ends the string and starts anew
        # CSI: cursor movement, clearing, modes, bracketed paste, device queries
        ("\x1b[2J\x1b[H\x1b[10;20Hx\x1b[3Ay\x1b[K", "xy"),
        ("\x1b[?1049h\x1b[?25lscreen\x1b[?1049l", "screen"),
        ("\x1b[200~pasted\x1b[201~", "pasted"),
        ("\x1b[6n\x1b[c\x1b[>0q", ""),
        ("\x1b[>4;2mkeys\x1b[?1m", "keys"),  # final m, but private parameters: not SGR
        ("\x1b[1 mx", "x"),  # final m after an intermediate byte: not SGR
        ("cut\x1b[12", "cut"),  # unterminated at the end of the line
        # DCS, SOS, PM, APC: up to ST, or to the end of the line
        ("\x1bP1$r0m\x1b\\ok", "ok"),
        ("\x1bPq#0;2;0;0;0#1!100~\x1b\\sixel", "sixel"),
        ("\x1bXsos\x1b\\\x1b^pm\x1b\\\x1b_apc\x1b\\z", "z"),
        ("a\x1bPnever terminated", "a"),
        # two and three byte escapes, a lone ESC
        ("\x1bc\x1b7\x1b8\x1bD\x1bM\x1b=\x1b>x", "x"),
        ("\x1b(B\x1b)0\x1b#8\x1b%Gy", "y"),
        ("x\x1b", "x"),
        ("\x1b\x1b[31mz", "\x1b[31mz"),
        # 8-bit C1: the character, and for CSI the whole sequence, even an SGR-looking one
        ("a\x9b2Jb\x9b31mc\x9b?25ld", "abcd"),
        ("\x85\x8d\x90\x9c\x9d\x9fq", "q"),
        ("é\x1b[2Jx\x85y", "éxy"),  # non-ASCII text takes the same checks
        # C0 but TAB, and DEL
        ("".join(chr(c) for c in range(0x20) if c != 0x0D) + "\x7fx", "\tx"),
        ("a\x00b\x08c\x07d", "abcd"),
        ("a\nb", "ab"),  # clean() never returns a newline, whatever it is given
        # SGR is kept byte for byte
        ("\x1b[1;31mred\x1b[0m \x1b[38;5;208mo\x1b[38:2::255:0:0mt\x1b[m", None),
        ("\x1b[mreset\x1b[0;1;4;7m", None),
        # markup is data, not markup
        ("[bold]markup[/] [link=https://x]y[/link] [red]", None),
        ("tab\tseparated\tfields", None),
        ("héllo wörld ✓ \ufffd", None),
    ],
)
def test_clean(text: str, expected: str | None) -> None:
    assert clean(text) == (text if expected is None else expected)


def test_sequences_are_removed_from_fed_lines_too() -> None:
    data = "\x1b]0;title\x07\x1b[2J\x1b[1;32mok\x1b[0m \x9b5Adone\x1bP+q\x1b\\\n".encode()
    assert run(data) == ["\x1b[1;32mok\x1b[0m done"]
    assert run(data, chunk=1) == ["\x1b[1;32mok\x1b[0m done"]


def test_a_nul_flood_leaves_nothing_but_the_text() -> None:
    assert run(b"\x00" * 100_000 + b"ok\n" + b"\x00" * 1000 + b"\n") == ["ok", ""]


def test_plain_and_coloured_chunks_pass_through_unchanged() -> None:
    lines = [f"\x1b[3{i % 8}mline {i}\x1b[0m" if i % 2 else f"line {i}" for i in range(5000)]
    assert run("\n".join(lines).encode() + b"\n") == lines


# --- over-long lines ----------------------------------------------------------------------


def test_a_10mb_line_without_newline_is_cut_as_it_arrives() -> None:
    size = 16384
    s = Sanitiser(size)
    chunk = b"x" * KIB64
    pieces: list[str] = []
    for _ in range(10 * 1024 * 1024 // KIB64):
        got = s.feed(chunk)
        assert got  # pieces come out as they fill, not at the end
        pieces += got
        assert len(s._tail) <= size  # the pending buffer never grows past one piece
    pieces += s.flush()
    assert len(pieces) == 10 * 1024 * 1024 // size
    assert all(piece == "x" * size for piece in pieces)


def test_a_long_line_is_cut_into_max_line_pieces() -> None:
    assert run(b"y" * 40_000 + b"\nz\n") == ["y" * 16384, "y" * 16384, "y" * 7232, "z"]
    assert run(b"abcdefghij\n", max_line=4) == ["abcd", "efgh", "ij"]
    assert run(b"abcdefghij\n", max_line=4, chunk=3) == ["abcd", "efgh", "ij"]


def test_a_line_of_exactly_max_line_with_crlf_is_one_line() -> None:
    assert run(b"12345678\r\nnext\n", max_line=8) == ["12345678", "next"]
    assert run(b"12345678\r\nnext\n", max_line=8, chunk=9) == ["12345678", "next"]


def test_pieces_of_a_cut_line_that_clean_to_nothing_are_dropped() -> None:
    assert run(b"\x07" * 10 + b"ok\n", max_line=4) == ["ok"]


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Sanitiser(0)


# --- any input at all ---------------------------------------------------------------------

ATOMS = [
    *(bytes([b]) for b in b"\x1b[]0123;:m?>H~ \\PX^_(#Babc\r\n\t\x00\x07\x08\x7f"),
    *(c.encode() for c in "\x85\x9b\x9c\x9dé€😀"),
    b"\xc2",
    b"\xe2\x82",
    b"\xf0\x9f",
    b"\xff",
    b"\x1b[31m",
    b"\x1b]0;",
    b"\x1b\\",
]


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(st.sampled_from(ATOMS) | st.binary(max_size=4), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    max_line=st.integers(min_value=1, max_value=12),
)
def test_any_bytes_in_any_chunking(data: bytes, cuts: list[int], max_line: int) -> None:
    whole = run(data, max_line, chunk=len(data) or 1)

    s = Sanitiser(max_line)
    chunked: list[str] = []
    edges = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for start, end in pairwise(edges):
        chunked += s.feed(data[start:end])
    chunked += s.flush()
    assert chunked == whole

    for line in whole:
        assert len(line) <= max_line
        assert clean(line) == line
        rest = SGR.sub("", line)
        assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f]", rest), repr(line)


# --- the ring -----------------------------------------------------------------------------


def test_ring_numbers_lines_and_stamps_each_batch_once() -> None:
    ring = Ring()
    assert (len(ring), ring.first_seq, ring.next_seq, ring.dropped) == (0, 0, 0, 0)
    assert ring.since(0) == []

    before = time.time()
    ring.append("out", ["a", "b"])
    ring.append("err", ["c"])
    ring.append("sys", [])
    after = time.time()

    lines = ring.since(0)
    assert [(ln.seq, ln.stream, ln.text) for ln in lines] == [
        (0, "out", "a"),
        (1, "out", "b"),
        (2, "err", "c"),
    ]
    assert all(isinstance(ln, Line) and before <= ln.time <= after for ln in lines)
    assert lines[0].time == lines[1].time
    assert (len(ring), ring.first_seq, ring.next_seq, ring.dropped) == (3, 0, 3, 0)


def test_ring_evicts_by_line_count() -> None:
    ring = Ring(max_lines=3)
    ring.append("out", ["a", "b"])
    ring.append("out", ["c", "d", "e"])
    assert [ln.text for ln in ring.since(0)] == ["c", "d", "e"]
    assert (len(ring), ring.first_seq, ring.next_seq, ring.dropped) == (3, 2, 5, 2)


def test_a_batch_bigger_than_the_ring_keeps_its_newest_lines() -> None:
    ring = Ring(max_lines=3)
    ring.append("out", ["old"])
    ring.append("out", list("abcdefg"))
    assert [(ln.seq, ln.text) for ln in ring.since(0)] == [(5, "e"), (6, "f"), (7, "g")]
    assert (ring.first_seq, ring.next_seq, ring.dropped) == (5, 8, 5)


def test_ring_evicts_by_characters() -> None:
    ring = Ring(max_lines=100, max_chars=10)
    ring.append("out", ["aaaa", "bbbb"])
    ring.append("out", ["cccc"])
    assert [ln.text for ln in ring.since(0)] == ["bbbb", "cccc"]
    assert (ring.first_seq, ring.dropped) == (1, 1)


def test_ring_counts_the_characters_of_lines_evicted_by_count() -> None:
    ring = Ring(max_lines=2, max_chars=5)
    ring.append("out", ["aaa"])
    ring.append("out", ["bb"])
    ring.append("out", ["c"])  # "aaa" goes by count: 3 characters kept, not 6
    ring.append("out", ["dddd"])  # "bb" goes by count: 5 kept, so nothing more goes
    assert [ln.text for ln in ring.since(0)] == ["c", "dddd"]
    assert ring.dropped == 2


def test_ring_keeps_the_newest_line_even_if_it_alone_is_over_max_chars() -> None:
    ring = Ring(max_chars=5)
    ring.append("out", ["a", "x" * 20])
    assert [ln.text for ln in ring.since(0)] == ["x" * 20]
    ring.append("out", ["y"])
    assert [ln.text for ln in ring.since(0)] == ["y"]
    assert ring.dropped == 2


@pytest.mark.parametrize("limit", [None, 0, 1, 2, 3, 7, 100])
def test_since_against_a_plain_list(limit: int | None) -> None:
    ring = Ring(max_lines=10)
    for i in range(25):
        ring.append("out", [f"line {i}"])
    assert (ring.first_seq, ring.next_seq) == (15, 25)
    for seq in range(-3, 30):
        expected = [s for s in range(15, 25) if s >= seq][:limit]
        got = ring.since(seq, limit)
        assert [ln.seq for ln in got] == expected
        assert [ln.text for ln in got] == [f"line {s}" for s in expected]


def test_since_the_newest_few_of_a_full_ring() -> None:
    ring = Ring()
    ring.append("out", [str(i) for i in range(20_000)])
    assert [ln.text for ln in ring.since(ring.next_seq - 3)] == ["19997", "19998", "19999"]
    assert [ln.text for ln in ring.since(0, limit=2)] == ["10000", "10001"]


def test_a_million_lines_keep_the_ring_bounded() -> None:
    ring = Ring()
    batch = ["x" * 80] * 1000
    for _ in range(1000):
        ring.append("out", batch)
        assert len(ring) <= 10_000
    assert (len(ring), ring.first_seq, ring.next_seq, ring.dropped) == (
        10_000,
        990_000,
        1_000_000,
        990_000,
    )


def test_ring_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Ring(max_lines=0)
    with pytest.raises(ValueError):
        Ring(max_chars=0)
