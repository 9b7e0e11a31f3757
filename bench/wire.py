"""Cost of the control protocol's encoding: stdlib ``json`` (what ``tui.engine.wire`` uses)
against ``orjson`` and ``msgspec``, on the two frames an attached console receives most.

Why this exists
---------------
Issue 15 asks for a well-kept framing/encoding library only if it pays, measured. An attached
console must receive a flooding child's output at >= 2x mprocs (about 240k lines/s), so the
engine's encoding and the client's decoding of line frames must each cost well under the
4 us a line that this leaves for everything.

What it measures
----------------
* a "lines" frame: 500 output lines, each ``[seq, stream, time, text]`` with text of 100-200
  characters (log-like ASCII, one line in ten with non-ASCII: accents, a check mark, an emoji),
  as one JSON object ``{"t": "lines", "entry": ..., "lines": [[...], ...]}``;
* a "view" frame: the state dicts of 10 entries (state, pids, knobs now/configured, usage,
  task stats, findings), what a client gets on attach and on every change.

Each codec encodes the object to a newline-terminated frame and decodes it back; rows are the
best of ``--repeat`` (5) timings of ``--number`` round trips. "wire" is ``tui.engine.wire``'s
own ``encode``/``decode`` (stdlib json, ``ensure_ascii``, checks included); ``json utf8`` is
stdlib json with ``ensure_ascii=False`` for comparison. MB/s counts frame bytes. The last
column says whether the codec can encode a string holding a lone surrogate (the engine's
output sanitiser replaces them, but other text may hold one): a codec that cannot needs a
fallback, or a frame could fail to encode.

Run from the repository root (orjson and msgspec are optional: rows say when missing)::

    .venv/bin/python bench/wire.py
    .venv/bin/python bench/wire.py --number 200 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tui.engine import wire

Codec = tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], Any]]
LINES_PER_FRAME = 500
TARGET_LINES = 240_000


def lines_frame(rng: random.Random) -> dict[str, Any]:
    words = [
        "GET",
        "POST",
        "/api/orders/",
        "200",
        "302",
        "ms",
        "user_id=42",
        "worker",
        "task",
        "succeeded",
        "in",
        "queued",
    ]
    lines = []
    for i in range(LINES_PER_FRAME):
        size = rng.randint(100, 200)
        text = f"[2026-12-06 13:{i % 60:02d}:07,{i:03d}: INFO/MainProcess] "
        while len(text) < size:
            text += rng.choice(words) + " "
        if i % 10 == 0:
            text = text[: size - 12] + " café ✓ 🚀 ü"
        lines.append([1_000_000 + i, "out" if i % 7 else "err", 1796_000_000.0 + i / 1000, text])
    return {"t": "lines", "entry": "worker", "lines": lines}


def view_frame() -> dict[str, Any]:
    def entry(i: int) -> dict[str, Any]:
        return {
            "name": f"entry{i}",
            "backend": "gunicorn" if i % 2 else "celery-worker",
            "state": "running",
            "since": 1796_000_000.5 + i,
            "pids": [4000 + i * 10 + k for k in range(5)],
            "restarts": i % 3,
            "knobs": {
                "workers": {"now": 4, "configured": 4},
                "threads": {"now": 2, "configured": 2},
            },
            "usage": {"cpu": 12.5 + i, "rss": 123_456_789 + i, "threads": 17, "fds": 40},
            "tasks": {"ready": 12, "running": 3, "failed_5m": 1, "done_1m": 240, "p95_ms": 812.0},
            "findings": [{"level": "warn", "text": f"port 80{i:02d} answered slowly (1.2 s)"}],
            "address": f"127.0.0.1:80{i:02d}",
        }

    return {"t": "view", "seq": 123456, "entries": [entry(i) for i in range(10)]}


def codecs() -> dict[str, Codec | str]:
    found: dict[str, Codec | str] = {
        "wire (json, ascii)": (wire.encode, wire.decode),
        "json utf8": (
            lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode() + b"\n",
            json.loads,
        ),
    }
    try:
        import orjson

        found["orjson"] = (lambda o: orjson.dumps(o) + b"\n", orjson.loads)
    except ImportError:
        found["orjson"] = "not installed"
    try:
        import msgspec

        enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
        found["msgspec"] = (lambda o: enc.encode(o) + b"\n", dec.decode)
    except ImportError:
        found["msgspec"] = "not installed"
    return found


def takes_surrogates(encode: Callable[[dict[str, Any]], bytes]) -> str:
    try:
        encode({"text": "half \ud800 a surrogate"})
    except (TypeError, ValueError):
        return "no (raises)"
    return "yes"


def best(stmt: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--number", type=int, default=400, help="round trips per timing")
    p.add_argument("--repeat", type=int, default=5, help="timings; the best is kept")
    args = p.parse_args(argv)
    frames = {"lines": lines_frame(random.Random(15)), "view": view_frame()}
    head = (
        f"{'codec':<20} {'frame':<6} {'bytes':>8} {'enc/s':>8} {'dec/s':>8} {'rt/s':>8}"
        f" {'MB/s rt':>8} {'enc us/line':>11} {'dec us/line':>11} {'surrogates':>11}"
    )
    print(head)
    print("-" * len(head))
    for name, codec in codecs().items():
        if isinstance(codec, str):
            print(f"{name:<20} {codec}")
            continue
        encode, decode = codec
        for kind, obj in frames.items():
            data = encode(obj)
            assert decode(data) == json.loads(data), name  # same object whatever the codec
            t_enc = best(lambda: encode(obj), args.number, args.repeat)  # noqa: B023
            t_dec = best(lambda: decode(data), args.number, args.repeat)  # noqa: B023
            per = LINES_PER_FRAME if kind == "lines" else 0
            rt = t_enc + t_dec
            enc_line = f"{t_enc / per * 1e6:>11.3f}" if per else f"{'':>11}"
            dec_line = f"{t_dec / per * 1e6:>11.3f}" if per else f"{'':>11}"
            print(
                f"{name:<20} {kind:<6} {len(data):>8} {1 / t_enc:>8.0f} {1 / t_dec:>8.0f}"
                f" {1 / rt:>8.0f} {len(data) / rt / 1e6:>8.1f} {enc_line} {dec_line}"
                f" {takes_surrogates(encode):>11}"
            )
    print(
        f"\nTarget {TARGET_LINES:,} lines/s to one client = "
        f"{1e6 / TARGET_LINES:.2f} us a line for everything (engine encode, client decode, "
        "ring, socket, screen)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
