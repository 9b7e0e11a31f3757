"""Framing of the control protocol: one JSON object per line, UTF-8, at most ``MAX_FRAME`` bytes.

Newline-delimited JSON because ``json.dumps`` escapes every newline and control character
inside strings, so a frame is exactly one line, readable with ``socat`` and writable by any
script; and because stdlib ``json`` is fast enough (bench/wire.py measures it against orjson
and msgspec). ``encode`` uses ``ensure_ascii``: a child's output can hold lone surrogates,
which cannot be encoded as UTF-8 but can be escaped as ``\\udXXX``, so encoding never fails
on text, and the same string comes out at the other end.

A reader never holds more than about two frames of bytes: asyncio streams must be made with
``limit=MAX_FRAME`` (``asyncio.open_unix_connection`` / ``start_unix_server``), so a peer that
sends an endless line gets ``FrameError`` instead of filling the engine's memory. After a
``FrameError`` the stream's position in the byte stream is unknown (oversized, cut off) or
the frame was unusable: answer with one error line and close the connection.

``VERSION`` is the protocol version both ends state in their first frame.
"""

from __future__ import annotations

import asyncio
import json
from typing import IO, Any

VERSION = 1
MAX_FRAME = 4 * 1024 * 1024  # bytes, without the newline: a full screen of history fits


class FrameError(ValueError):
    """One line: what is wrong with the frame received or about to be sent."""


def encode(obj: dict[str, Any]) -> bytes:
    """One frame, newline included. Raises ``FrameError`` if it is longer than the peer reads."""
    data = json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"
    if len(data) - 1 > MAX_FRAME:
        raise FrameError(
            f"frame of {len(data) - 1} bytes is longer than the {MAX_FRAME} a peer reads; "
            "send it in smaller parts"
        )
    return data


def decode(line: bytes) -> dict[str, Any]:
    """The object in one frame (trailing newline optional)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FrameError(f"frame is not UTF-8 (byte 0x{line[e.start]:02x} at {e.start})") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise FrameError(f"frame is not JSON ({e.msg} at character {e.pos})") from e
    except RecursionError as e:
        raise FrameError("frame nests JSON too deeply") from e
    if not isinstance(obj, dict):
        raise FrameError(f"frame is a JSON {type(obj).__name__}, not an object")
    return obj


async def read(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None when the peer closed the stream between frames."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise FrameError(
            f"connection closed in the middle of a frame ({len(e.partial)} bytes)"
        ) from e
    except asyncio.LimitOverrunError as e:
        raise FrameError(f"frame longer than {MAX_FRAME} bytes; send it in smaller parts") from e
    if len(line) - 1 > MAX_FRAME:  # a stream made with a larger limit than it should
        raise FrameError(f"frame longer than {MAX_FRAME} bytes; send it in smaller parts")
    return decode(line)


def read_sync(file: IO[bytes]) -> dict[str, Any] | None:
    """``read`` for a blocking client: ``file`` is ``sock.makefile("rb")``."""
    line = file.readline(MAX_FRAME + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        if len(line) > MAX_FRAME:
            raise FrameError(f"frame longer than {MAX_FRAME} bytes; send it in smaller parts")
        raise FrameError(f"connection closed in the middle of a frame ({len(line)} bytes)")
    return decode(line)
