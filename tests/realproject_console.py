"""Run by test_envfile in its own process, from tests/realproject's folder: the console's own
start (``discover``, which loads .env) with the project's web and worker entries.

It asks the web server to enqueue a task that writes an Order with the ORM, waits for the
worker to run it (the web lists the order), and reads the console's statistics for the
"later" queue, which no worker serves. Prints one JSON object with what it saw; a wait that
runs out is recorded, not raised, so the test says which part failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from helpers import get

from tui.engine.supervisor import Supervisor
from tui.project import discover, entries


async def waited(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def ready(sup: Supervisor, queue: str) -> int | None:
    stats = sup.stats
    if stats is None or stats.error:
        return None
    return sum(q.ready for q in stats.queues if q.queue == queue)


async def main(project_dir: Path) -> dict[str, object]:
    project = discover(None, [], project_dir)
    sup = Supervisor(entries(project), watchdog=False, stats_every=0.5)
    backend = sup["web"].entry.backend
    assert backend is not None
    url = (backend.web_url() or "").rstrip("/")
    seen: dict[str, object] = {}
    await sup.start_all()
    try:
        await waited(lambda: get(url + "/") is not None, 20)
        seen["web"] = get(url + "/")
        get(url + "/order/first/")
        await waited(lambda: "first" in (get(url + "/orders/") or ""), 15)
        seen["orders"] = get(url + "/orders/")
        await waited(lambda: ready(sup, "later") == 3, 10)
        seen["later_ready"] = ready(sup, "later")
        seen["stats_error"] = sup.stats.error if sup.stats else "no statistics"
    finally:
        sup.kill_all()
        await sup.stop_all()
    return seen


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
