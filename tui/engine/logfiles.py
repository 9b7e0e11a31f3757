"""Each entry's output on disk, so history outlives the ring, the screen and the engine itself.

``<folder>/<entry>.log`` gets every line the supervisor keeps in the entry's ring, one per line::

    2026-12-06T13:42:06.123+01:00 out | GET /health 200

local time with its offset (unambiguous across a clock change), the stream (``out``, ``err``, or
``sys`` for the console's own notes), then the text without its colours. A file that would pass
``max_bytes`` is rotated first (``web.log`` -> ``web.log.1`` ... ``web.log.<keep>``, the oldest
dropped), at a line boundary: only a single line longer than the limit makes a longer file.

What is written is exactly the ring's text: the console's own notes (command lines) are masked
there already, as on screen, and a child's own output is not masked, on screen or here. That
is why the folder and files are private (``backends.private``: 0700 and 0600, checked, a file
that is a symbolic link refused).

The engine's event loop must never wait for a disk: ``write`` only queues the lines for a
writer thread, which writes each entry's queued lines in one system call. When the queue is
full (the disk stalled or cannot keep up) lines are dropped and counted, and the file later
says ``N lines not written: the disk did not keep up`` where they belong. A file that cannot
be written (disk full, permissions, a link planted in its place) is reported once, by
``problems``, for the engine to show in that entry's pane; its lines are counted, it is tried
again every few seconds, and once it works the file says how many lines it lost and why.

``tail`` reads the newest lines back (``prodserver-tui logs -n N``, an attach after a restart)
from the end of the files, block by block, never reading whole files.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from hashlib import sha256
from itertools import count, groupby
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

from backends import private
from tui.engine.output import Line, uncoloured

RETRY_AFTER = 5.0  # s: a file that failed is tried again after this long (disk freed, fixed)
SLOW_DISK = "the disk did not keep up"
_BLOCK = 65536  # bytes tail reads at a time, from the end
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_LONGEST = 120  # characters of a file name kept before the rest is replaced by its hash
_text = attrgetter("text")
_kind = attrgetter("stream", "time")


class Logged(NamedTuple):
    """A line read back from a file; time is None for a line that does not parse (a line
    half-written when the disk filled, say: its text is then the whole raw line)."""

    time: float | None
    stream: str
    text: str


def file_name(name: str) -> str:
    """The entry's file name: the name itself when it is plain, else an escaped form.

    Names come from the settings and can hold anything (``../x``, ``/``, NUL, 64 wide
    characters). Every character but ASCII letters, digits, ``_``, ``-`` and a ``.`` that is
    not the first is written ``%XX`` per UTF-8 byte, ``%`` included, so two names never map to
    the same file and none leaves the folder or hides in it. A form too long for a file name
    is cut and ends in ``~`` and a hash of the name: ``~`` is never left unescaped otherwise.
    """
    stem = "".join(
        c if c in _SAFE and not (i == 0 and c == ".") else _escaped(c) for i, c in enumerate(name)
    )
    if not stem or len(stem) > _LONGEST:
        digest = sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        stem = f"{stem[: _LONGEST - 17]}~{digest}"
    return f"{stem}.log"


def _escaped(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


class _File:
    """One entry's file, as the writer thread sees it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.size = 0
        self.lost = 0  # lines not written since the file last failed
        self.why = ""  # why it failed: set while it is failing, cleared once it works again
        self.retry_at = 0.0


class LogFiles:
    """Every entry's log file in one private folder, written by one thread.

    ``queue_chars`` bounds what waits for the disk (characters of text, plus one per line so
    a flood of blank lines counts too): the engine's memory does not grow while the disk stalls.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        max_bytes: int = 10_000_000,
        keep: int = 5,
        queue_chars: int = 16_000_000,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError(f"log files need max_bytes of at least 1024, got {max_bytes}")
        if keep < 0:
            raise ValueError(f"log files to keep must be 0 or more, got {keep}")
        self.folder = private.folder(folder)  # UnsafePath (an OSError): a clear line, at start
        self.max_bytes = max_bytes
        self.keep = keep
        self._limit = queue_chars
        self._wake = threading.Condition()
        self._pending: list[tuple[str, int, Sequence[Line]]] = []  # name, dropped before, lines
        self._queued = 0
        self._dropped: dict[str, int] = {}  # lines dropped since the last batch queued, by name
        self._news: dict[str, str] = {}  # problems not yet taken by problems()
        self._closing = False
        self._files: dict[str, _File] = {}  # the writer thread's alone
        self._stamps: tuple[float, str] = (-1.0, "")
        self._thread = threading.Thread(target=self._run, name="log files", daemon=True)
        self._thread.start()

    def write(self, name: str, lines: Sequence[Line]) -> None:
        """Queue lines for the entry's file; never blocks on the disk and never raises.
        After ``close`` lines are ignored: the engine has stopped."""
        if not lines:
            return
        cost = len(lines) + sum(map(len, map(_text, lines)))
        with self._wake:
            if self._closing:
                return
            if self._queued and self._queued + cost > self._limit:
                self._dropped[name] = self._dropped.get(name, 0) + len(lines)
                return
            self._pending.append((name, self._dropped.pop(name, 0), lines))
            self._queued += cost
            self._wake.notify()

    def problems(self) -> dict[str, str]:
        """Problems with entries' files, by entry name, each returned once: when a file starts
        failing (not again while it keeps failing; again if it fails after working)."""
        if not self._news:  # the common case, without the lock: a dict's truth is atomic
            return {}
        with self._wake:
            news, self._news = self._news, {}
        return news

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (and what was dropped, as a count), close the files. Waits at
        most ``timeout`` seconds: a stalled disk keeps the rest, and the thread, which is a
        daemon and does not hold up the exit."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                batch, self._pending, self._queued = self._pending, [], 0
                closing = self._closing
                dropped, self._dropped = (self._dropped, {}) if closing else ({}, self._dropped)
            chunks: dict[str, list[str]] = {}
            for name, before, lines in batch:
                parts = chunks.setdefault(name, [])
                if before:
                    parts.append(self._notice(before, SLOW_DISK))
                parts.append(self._format(lines))
            for name, before in dropped.items():
                chunks.setdefault(name, []).append(self._notice(before, SLOW_DISK))
            for name, parts in chunks.items():
                self._append(name, "".join(parts).encode("utf-8", "replace"))
            if closing:
                for file in self._files.values():
                    if file.fd is not None:
                        os.close(file.fd)
                        file.fd = None
                return

    def _format(self, lines: Sequence[Line]) -> str:
        """Lines as the file has them: a ring's batch shares its stream and time, so each
        run of those is one join; colours go in one pass over the result."""
        out = []
        for (stream, when), run in groupby(lines, _kind):
            texts = list(map(_text, run))
            prefix = f"{self._stamp(when)} {stream} | "
            out.append(prefix + f"\n{prefix}".join(texts) + "\n")
            if out[-1].count("\n") != len(texts):  # a text holding a newline would forge lines
                safe = [t.replace("\n", " ") for t in texts]
                out[-1] = prefix + f"\n{prefix}".join(safe) + "\n"
        text = "".join(out)
        return uncoloured(text) if "\x1b" in text else text

    def _notice(self, lines: int, why: str) -> str:
        return f"{self._stamp(time.time())} sys | {lines} lines not written: {why}\n"

    def _stamp(self, when: float) -> str:
        if self._stamps[0] != when:
            shown = datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds")
            self._stamps = (when, shown)
        return self._stamps[1]

    def _append(self, name: str, data: bytes) -> None:
        file = self._files.get(name)
        if file is None:
            file = self._files[name] = _File(self.folder / file_name(name))
        if file.fd is None:
            if time.monotonic() < file.retry_at:
                file.lost += data.count(b"\n")
                return
            try:
                self._open(file)
            except OSError as e:
                self._failed(name, file, e, data.count(b"\n"))
                return
            if file.lost:
                notice = self._notice(file.lost, f"the file could not be written ({file.why})")
                data = notice.encode() + data
        view, at = memoryview(data), 0
        try:
            while at < len(data):
                stop = len(data)
                if stop - at > self.max_bytes - file.size:  # to the last line that fits
                    stop = data.rfind(b"\n", at, at + self.max_bytes - file.size) + 1
                    if not stop and not file.size:  # one line longer than a whole file
                        stop = data.index(b"\n", at) + 1
                while at < stop:
                    at += self._put(file, view[at:stop])
                if at < len(data):
                    self._rotate(file)
        except OSError as e:
            # A line cut short is not lost: opened again, the file ends it (see _open).
            cut_short = at > 0 and data[at - 1] != ord("\n")
            self._failed(name, file, e, data.count(b"\n", at) - cut_short)
            return
        file.lost, file.why = 0, ""

    def _put(self, file: _File, data: memoryview | bytes) -> int:
        assert file.fd is not None
        done = os.write(file.fd, data)
        file.size += done
        return done

    def _open(self, file: _File) -> None:
        """Checked each time (a first write, a rotation, a retry): the folder may be gone or
        changed since, and a link may have been planted where the file was."""
        private.folder(self.folder)
        path = private.file(file.path, make=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise private.UnsafePath(f"{path} is not a file; remove it")
            file.fd, file.size = fd, info.st_size
            # A line cut short (the disk filled, the engine was killed) is ended first.
            if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
                self._put(file, b"\n")
        except OSError:
            file.fd = None
            os.close(fd)
            raise

    def _rotate(self, file: _File) -> None:
        assert file.fd is not None
        os.close(file.fd)
        file.fd = None
        if self.keep:
            for n in range(self.keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{file.path}.{n}", f"{file.path}.{n + 1}")
            os.rename(file.path, f"{file.path}.1")
        else:
            os.unlink(file.path)
        self._open(file)

    def _failed(self, name: str, file: _File, error: OSError, lines: int) -> None:
        if file.fd is not None:
            with contextlib.suppress(OSError):
                os.close(file.fd)
            file.fd = None
        file.lost += lines
        file.retry_at = time.monotonic() + RETRY_AFTER
        if file.why:
            return  # failing still: said already
        if isinstance(error, private.UnsafePath):
            file.why = str(error)
        else:
            file.why = f"{file.path}: {error.strerror or error}"
        with self._wake:
            self._news[name] = (
                f"-- log file not written: {file.why}; its lines are not kept on disk until it "
                f"can be (tried again every {RETRY_AFTER:g} s)"
            )


def tail(folder: str | os.PathLike[str], name: str, n: int) -> list[Logged]:
    """The entry's last n lines on disk, oldest first, across its rotated files.

    Each file is read backwards from its end in blocks until n lines are found, so the cost
    depends on n, not on how much history there is. No files: an empty list.
    """
    found: list[bytes] = []  # newest first
    base = Path(folder) / file_name(name)
    for i in count():
        if len(found) >= n:
            break
        try:
            fd = os.open(f"{base}.{i}" if i else base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if i:  # (the current file may be missing for a moment: rotated, not yet made)
                break
            continue
        try:
            found += _newest(fd, n - len(found))
        finally:
            os.close(fd)
    found.reverse()
    return list(map(_parse, found))


def _newest(fd: int, want: int) -> Iterator[bytes]:
    """Up to ``want`` non-empty lines of a file, newest first, read from the end."""
    end = os.fstat(fd).st_size
    carry = b""  # the start of the line the previous block began in the middle of
    while end > 0 and want > 0:
        start = max(0, end - _BLOCK)
        pieces = (os.pread(fd, end - start, start) + carry).split(b"\n")
        carry = pieces.pop(0) if start else b""
        end = start
        for piece in reversed(pieces):
            if piece and want > 0:
                want -= 1
                yield piece


def _parse(raw: bytes) -> Logged:
    line = raw.decode("utf-8", "replace")
    stamp, _, rest = line.partition(" ")
    if rest[3:6] == " | " and rest[:3] in ("out", "err", "sys"):
        with contextlib.suppress(ValueError):
            return Logged(_when(stamp), rest[:3], rest[6:])
    return Logged(None, "sys", line)


@lru_cache(maxsize=256)
def _when(stamp: str) -> float:
    """Cached: the lines of one batch share their stamp, and parsing one is not free."""
    return datetime.fromisoformat(stamp).timestamp()
