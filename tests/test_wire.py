"""Control protocol framing over real Unix sockets: asyncio streams on one end, a plain
blocking socket (or a thread writing into one) on the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tui.engine import wire
from tui.engine.wire import MAX_FRAME, FrameError, decode, encode, read, read_sync

Pair = tuple[socket.socket, socket.socket]
Stream = tuple[asyncio.StreamReader, socket.socket, asyncio.StreamWriter]
ODD: dict[str, Any] = {
    "text": "line one\nline two\r\n\ttab \x00 nul \x1b[31m red é ✓ 🚀",
    "lone": "half \ud800 a surrogate, \udcff another",
    "nested": {"list": [1, 2.5, None, True, [[], {}]], "empty": ""},
}


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.fixture
async def stream(pair: tuple[socket.socket, socket.socket]) -> AsyncIterator[Stream]:
    """An asyncio reader on one end (made as the engine makes it), the raw peer socket."""
    ours, theirs = pair
    reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_FRAME)
    yield reader, theirs, writer
    writer.close()


def send_all(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send from a thread, as a peer does, while the event loop reads; a peer the reader hangs
    up on sees an error, as expected."""

    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)

    sender = threading.Thread(target=send)
    sender.start()
    return sender


async def test_frames_round_trip_whatever_the_text_and_the_chunking(
    stream: Stream,
) -> None:
    reader, peer, _ = stream
    frames = [{"v": wire.VERSION, "hello": "engine"}, ODD, {"lines": [[1, "o", 0.5, "x" * 200]]}]
    data = b"".join(encode(frame) for frame in frames)
    assert data.count(b"\n") == len(frames)  # one frame, one line: newlines in text escaped
    for i in range(0, len(data), 7):  # frames cut anywhere on the way
        peer.sendall(data[i : i + 7])
    peer.shutdown(socket.SHUT_WR)
    assert [await read(reader) for _ in frames] == frames
    assert await read(reader) is None  # clean end between frames


def test_encode_never_fails_on_text_and_stays_ascii() -> None:
    data = encode(ODD)
    assert data.isascii() and data.endswith(b"\n")
    assert b"\\ud800" in data and b"\\u0000" in data
    assert decode(data) == ODD  # the lone surrogates come back as they went


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"hello\n", "frame is not JSON (Expecting value at character 0)"),
        (b"\n", "frame is not JSON"),
        (b'{"a": "\x00"}\n', "frame is not JSON (Invalid control character"),
        (b"[1, 2]\n", "frame is a JSON list, not an object"),
        (b'"text"\n', "frame is a JSON str, not an object"),
        (b'{"a": "\xff\xfe"}\n', "frame is not UTF-8 (byte 0xff at 7)"),
        (b'{"a": "\xed\xa0\x80"}\n', "frame is not UTF-8 (byte 0xed at 7)"),  # a raw surrogate
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "frame nests JSON too deeply"),
    ],
)
async def test_a_bad_frame_is_one_line_and_the_next_one_reads(
    stream: Stream, raw: bytes, says: str
) -> None:
    reader, peer, _ = stream
    peer.sendall(raw + encode({"after": 1}))
    with pytest.raises(FrameError) as caught:
        await read(reader)
    assert str(caught.value).startswith(says) and "\n" not in str(caught.value)
    assert await read(reader) == {"after": 1}


async def test_disconnect_in_the_middle_of_a_frame(
    stream: Stream,
) -> None:
    reader, peer, _ = stream
    peer.sendall(encode({"whole": 1}) + b'{"cut": "of')
    peer.close()
    assert await read(reader) == {"whole": 1}
    with pytest.raises(FrameError, match=r"closed in the middle of a frame \(11 bytes\)"):
        await read(reader)


async def test_a_frame_of_exactly_the_limit_reads_one_more_byte_does_not(
    stream: Stream,
) -> None:
    reader, peer, writer = stream
    filler = MAX_FRAME - len(b'{"x":""}')
    fits = {"x": "a" * filler}
    assert len(encode(fits)) == MAX_FRAME + 1
    over = b'{"x":"' + b"a" * (filler + 1) + b'"}\n'  # one byte over
    sender = send_all(peer, encode(fits) + over)
    assert await read(reader) == fits
    with pytest.raises(FrameError, match=f"frame longer than {MAX_FRAME} bytes"):
        await read(reader)
    writer.close()  # as the engine does after a FrameError: the sender unblocks
    await asyncio.to_thread(sender.join)
    with pytest.raises(FrameError, match="send it in smaller parts"):
        encode({"x": "a" * (filler + 1)})


async def test_an_endless_frame_is_refused_before_it_is_all_read(
    stream: Stream,
) -> None:
    """The reader stops taking bytes at about twice the limit: a peer sending 64 MiB without a
    newline is refused while most of it is still unsent, blocked in its own send."""
    reader, peer, writer = stream
    total = 64 * 1024 * 1024
    sent = [0]

    def flood() -> None:
        chunk = b"x" * 65536
        try:
            while sent[0] < total:
                sent[0] += peer.send(chunk)
        except OSError:
            pass  # the reader closed on us: what a refused peer sees

    sender = threading.Thread(target=flood)
    sender.start()
    with pytest.raises(FrameError, match=f"frame longer than {MAX_FRAME} bytes"):
        await read(reader)
    await asyncio.sleep(0.2)  # let the stream take all it will take
    assert sender.is_alive() and sent[0] < 4 * MAX_FRAME < total
    peer.shutdown(socket.SHUT_WR)
    writer.close()  # the connection ends: the sender unblocks
    await asyncio.to_thread(sender.join)


def test_blocking_reader(pair: Pair) -> None:
    ours, theirs = pair
    file = ours.makefile("rb")
    theirs.sendall(encode(ODD) + b"nope\n" + encode({"v": 1}) + b'{"cut"')
    theirs.shutdown(socket.SHUT_WR)
    assert read_sync(file) == ODD
    with pytest.raises(FrameError, match="not JSON"):
        read_sync(file)
    assert read_sync(file) == {"v": 1}
    with pytest.raises(FrameError, match=r"middle of a frame \(6 bytes\)"):
        read_sync(file)
    assert read_sync(file) is None


def test_blocking_reader_refuses_an_endless_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    sender = send_all(theirs, b"y" * (MAX_FRAME + 10))
    with pytest.raises(FrameError, match=f"frame longer than {MAX_FRAME} bytes"):
        read_sync(ours.makefile("rb"))
    sender.join()


def test_encode_is_plain_compact_json() -> None:
    assert encode({"v": 1, "a": [1, "b"]}) == b'{"v":1,"a":[1,"b"]}\n'
    assert json.loads(encode({"k": "\u2028"})) == {"k": "\u2028"}
