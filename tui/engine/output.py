"""Child output: turning hostile bytes into safe lines, and keeping a bounded history of them.

A child can print anything: invalid UTF-8, NUL floods, megabyte lines, or escape sequences that
retitle, clear or reprogram the terminal the console runs in. Only SGR colour sequences survive,
because colour is most of what makes logs readable; everything else that a terminal would act on
is removed here, once, so that no later layer has to care. That includes the bidi controls that
make a terminal which orders text right-to-left show it in another order than it reads. The text
is never treated as markup.

Text from the database or the settings (a task's exception, a queue name, a finding quoting
them) is as hostile, and goes through the same sanitiser: `inert` and `inert_all`.
"""

from __future__ import annotations

import codecs
import re
import time
from collections import deque
from dataclasses import fields, is_dataclass, replace
from functools import partial
from itertools import islice, repeat
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

# The check that lets almost all output skip clean(): is there anything but printable text, TAB,
# LF and SGR sequences? Stripping the allowed bytes with bytes.translate is about ten times
# faster than a regex over the same ASCII text; other text takes the regex.
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\x1b"
# Bidi embeddings, overrides, isolates and marks: a bidi terminal reorders text around them.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_NEEDS_WORK = re.compile(f"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f{_BIDI}]")  # bar TAB, LF, ESC
_NOT_SGR = re.compile(r"\x1b(?!\[[0-9:;]*m)")

# What clean() removes. Every match starts with one control character, so the regex engine can
# skip ahead to the next one instead of trying the whole pattern at every position (twice as
# fast); the lookbehinds then pick the rest of the sequence by that first character. An ESC
# that starts an SGR sequence matches nothing and is kept, and the SGR's own characters are all
# printable. An unterminated sequence runs to the end of the line.
_CONTROL = re.compile(
    r"""
    [\x00-\x08\x0a-\x0c\x0e-\x1f\x7f-\x9f"""
    + _BIDI
    + r"""]  # any C0 but TAB and CR, DEL, any C1, bidi
    (?: (?<=\x1b) (?! \[ [0-9:;]* m )
        (?: \[ [0-?]* [ -/]* [@-~]?                  # CSI, including bracketed paste markers
          | \] [^\x07\x1b\x9c]* (?: \x07 | \x9c | \x1b\\ )?  # OSC: title, hyperlink, clipboard
          | [PX^_] [^\x1b\x9c]* (?: \x9c | \x1b\\ )?   # DCS, SOS, PM, APC
          | [ -/]* [0-~]?                            # ESC c, ESC 7, ESC ( B, or a lone ESC
        )
      | (?<=\x9b) [0-?]* [ -/]* [@-~]?               # 8-bit CSI: the whole sequence
      | (?<! [\x1b\x9b] )                            # anything else, with the run of such
        [\x00-\x08\x0a-\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9a\x9c-\x9f"""
    + _BIDI
    + r"""]*  # controls after it (a NUL flood)
    )
    """,
    re.VERBOSE,
)


def _is_clean(text: str) -> bool:
    if text.isascii():
        if text.encode("ascii").translate(None, _PLAIN_ASCII):
            return False
    elif _NEEDS_WORK.search(text):
        return False
    return _NOT_SGR.search(text) is None


class Line(NamedTuple):
    """A tuple: immutable, so viewers can hold on to lines the ring hands out, and small."""

    seq: int  # strictly increasing per Ring, from 0: lets a reader resume where it left off
    stream: str  # "out", "err", or "sys" for the console's own notes about the process
    text: str  # sanitised, without its newline; may contain SGR sequences
    time: float  # time.time() of the append


def clean(text: str) -> str:
    """Sanitise one line; a CR is a progress bar redrawing it, so only the last drawing counts.

    Sequences are removed before CRs are resolved, so "50%\\r\\x1b[K" (redraw, erase) keeps
    "50%" rather than nothing: an erase with nothing after it is not worth losing the line.
    """
    text = _CONTROL.sub("", text)
    if "\r" in text:
        text = text.rstrip("\r").rpartition("\r")[2]
    return text


_SGR = re.compile(r"\x1b\[[0-9:;]*m")
T = TypeVar("T")


def uncoloured(text: str) -> str:
    """A sanitised line without its colours (the only escapes the sanitiser keeps)."""
    return _SGR.sub("", text)


def inert(text: str) -> str:
    """Text from outside that is not a child's output (a database row, a setting, an error
    quoting them), made safe for any screen by the child-output sanitiser: invalid UTF-8 and
    lone surrogates replaced, escapes, C1 and bidi controls removed, lines cut at 16 KiB. Its
    colours go too: no such text has any business colouring, or hiding (SGR 8), anything."""
    if text.isprintable() and text.isascii():  # names, ids, most messages: nothing to do
        return text
    sanitiser = Sanitiser()
    lines = sanitiser.feed(text.encode("utf-8", "surrogatepass")) + sanitiser.flush()
    return "\n".join(uncoloured(line) for line in lines)


def inert_all(value: T) -> T:
    """Every string in a view object (dataclasses, lists, tuples and dicts of them) made
    `inert`: what the console shows of database rows is made safe where it comes in, once,
    rather than at each of the many places that show it."""
    found: Any = value
    if isinstance(found, str):
        found = inert(found)
    elif is_dataclass(found) and not isinstance(found, type):
        found = replace(found, **{f.name: inert_all(getattr(found, f.name)) for f in fields(found)})
    elif type(found) in (list, tuple):
        found = type(found)(map(inert_all, found))
    elif type(found) is dict:
        found = {inert_all(k): inert_all(v) for k, v in found.items()}
    return found


class Sanitiser:
    """Incremental: one per child stream. Bytes in, clean complete lines out.

    Lines are cut on the decoded text, so how the bytes were chunked never changes the result.
    Lines over max_line characters are cut into pieces before cleaning, as they arrive, so a
    child printing without newlines cannot make the buffer grow. A sequence straddling a cut is
    broken (and removed, or left as harmless text): pieces of that size are not terminal output.
    """

    def __init__(self, max_line: int = 16384) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._max_line = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""  # the unterminated line so far, at most max_line characters
        self._continued = False  # the tail is the rest of a line already cut into pieces

    def feed(self, data: bytes) -> list[str]:
        """Complete lines found so far; the unterminated tail is kept for the next call."""
        return self._take(self._decoder.decode(data))

    def flush(self) -> list[str]:
        """At EOF: whatever is left, with the unterminated tail as a line if it is not empty.

        An empty tail is dropped even if bytes produced it: tools commonly end on a bare
        "show the cursor" sequence, and a blank line for it is noise.
        """
        lines = self._take(self._decoder.decode(b"", final=True))
        last = clean(self._tail)
        self._tail, self._continued = "", False
        if last:
            lines.append(last)
        return lines

    def _take(self, chunk: str) -> list[str]:
        size = self._max_line
        text = self._tail + chunk
        lines = text.split("\n")
        tail = lines.pop()
        cut = (len(tail) - 1) // size * size if tail else 0  # leaves 1..size characters
        head, self._tail = tail[:cut], tail[cut:]
        continued = self._continued
        self._continued = bool(cut) or (continued and not lines)
        if not lines and not head:
            return []
        if not head and max(map(len, lines)) <= size and _is_clean(text):
            return lines

        # A line that cleans to nothing is still a line (it was there, and blank lines matter),
        # but the pieces of a cut one are not lines of their own: empty ones are dropped.
        out = []
        for i, line in enumerate(lines):
            if len(line) <= size and not (i == 0 and continued):
                out.append(clean(line))
            else:
                out += filter(None, map(clean, _cut(line, size)))
        out += filter(None, map(clean, _cut(head, size)))
        return out


def _cut(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# Line(...) and Line._make run Python code per line; this does not, and appending is per line.
_new_line = partial(tuple.__new__, Line)
_text = attrgetter("text")


class Ring:
    """The kept output of one process, bounded in lines and in characters.

    Memory must stay bounded whatever the child prints, and a viewer that fell behind must be
    able to tell how much it missed: seq numbers keep counting across evictions.
    """

    def __init__(self, max_lines: int = 10_000, max_chars: int = 4_000_000) -> None:
        if max_lines < 1 or max_chars < 1:
            raise ValueError("max_lines and max_chars must be at least 1")
        self._max_lines = max_lines
        self._max_chars = max_chars
        self._lines: deque[Line] = deque(maxlen=max_lines)
        self._chars = 0
        self.next_seq = 0  # the seq the next appended line will get
        self.dropped = 0  # lines evicted so far

    @property
    def first_seq(self) -> int:
        """Seq of the oldest line kept; next_seq when empty."""
        return self.next_seq - len(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def at(self, seq: int) -> Line | None:
        """The line with this seq, if still kept: what a viewer drawing one row asks for."""
        index = seq - self.first_seq
        return self._lines[index] if 0 <= index < len(self._lines) else None

    def append(self, stream: str, lines: list[str], at: float | None = None) -> None:
        """One timestamp for the batch: it arrived in one read, and time.time() is not free.
        ``at``: when another ring took them in (a console's copy of the engine's output)."""
        seq = self.next_seq
        self.next_seq += len(lines)
        # A batch bigger than the whole ring (a flood of blank lines) is trimmed before any
        # Line is built for lines that would be evicted at once.
        skip = max(0, len(lines) - self._max_lines)
        if skip:
            lines = lines[skip:]
            self.dropped += skip
        kept = self._lines
        excess = len(kept) + len(lines) - self._max_lines
        if excess > 0:  # the deque's maxlen evicts these as the batch goes in, without a loop
            self._chars -= sum(map(len, map(_text, islice(kept, excess))))
            self.dropped += excess
        now = time.time() if at is None else at
        kept.extend(
            map(
                _new_line, zip(range(seq + skip, self.next_seq), repeat(stream), lines, repeat(now))
            )
        )
        self._chars += sum(map(len, lines))
        while self._chars > self._max_chars and len(kept) > 1:
            self._chars -= len(kept.popleft().text)
            self.dropped += 1

    def since(self, seq: int, limit: int | None = None) -> list[Line]:
        """Kept lines from seq on, oldest first; at most limit of them, the oldest ones.

        Viewers mostly ask for the newest few lines of a full ring, so those are reached from
        the right end instead of walking (or copying) the whole deque.
        """
        n = len(self._lines)
        start = max(seq - self.first_seq, 0)
        stop = n if limit is None else min(n, start + limit)
        if stop <= start:
            return []
        if stop <= n - start:
            return list(islice(self._lines, start, stop))
        newest_first = list(islice(reversed(self._lines), n - stop, n - start))
        newest_first.reverse()
        return newest_first
