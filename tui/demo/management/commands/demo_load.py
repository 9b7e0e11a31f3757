"""Enqueue a steady, jittered trickle of demo tasks, so the workers always have something to do.

It runs as one more supervised process in the demo, so it must behave like a good child: one
short line per batch (readable in a log pane), and a clean, quiet exit 0 on SIGTERM or Ctrl-C
instead of a traceback.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import urllib.request
from collections import Counter
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import OperationalError

from tui.demo import tasks

# Mostly fast work, with enough of the rest that every queue and outcome shows up.
MIX: dict[str, int] = {"fast": 60, "flaky": 15, "email": 15, "slow": 10}


def enqueue_one(kind: str) -> None:
    if kind == "fast":
        tasks.fast.enqueue(random.randint(500, 5000))
    elif kind == "slow":
        tasks.slow.enqueue()
    elif kind == "flaky":
        tasks.flaky.enqueue(random.randint(1, 1000))
    else:
        n = random.randint(1, 9999)
        tasks.send_email.enqueue(f"user{n}@example.com", f"Your order #{n}")


def visit_site(pages: int) -> None:
    """A few page views per batch, so the web pane has requests (and a 404) to count."""
    for _ in range(pages):
        path = random.choice(["/", "/", "/", "/enqueue/", "/missing/"])
        # 404s raise too, and a web server still starting refuses: both are fine here.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{settings.PORT}{path}", timeout=2).close()


def describe(counts: Counter[str]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
    return f"enqueued {total} task{'s' if total != 1 else ''} ({parts})"


class Command(BaseCommand):
    help = "Enqueue demo tasks forever (about 2-5 a second) until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batches", type=int, default=0, help="stop after this many batches (0: never)"
        )

    def handle(self, *args: Any, batches: int, **options: Any) -> None:
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only set a flag: the current batch finishes, and the wait below wakes at once.
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        done = 0
        while not stop.is_set() and (batches <= 0 or done < batches):
            size = random.randint(1, 4)
            kinds = random.choices(list(MIX), weights=list(MIX.values()), k=size)
            try:
                for kind in kinds:
                    enqueue_one(kind)
            except OperationalError as exc:  # SQLite busy beyond its timeout: try next batch
                self.stderr.write(f"enqueue failed: {exc}")
            else:
                self.stdout.write(describe(Counter(kinds)))
            self.stdout.flush()
            visit_site(random.randint(0, 6))
            done += 1
            # size tasks at 2-5 tasks/s on average, with jitter between batches.
            stop.wait(size / random.uniform(2.0, 5.0))
