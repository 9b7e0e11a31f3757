"""Celery worker and beat on the test project, against the real Redis, driven by the supervisor.

Everything uses one Redis database of its own (``/7``), emptied before and after each test.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import psutil
import pytest
from helpers import entry, is_alive, tree, until
from needs import needs

from backends.base import Project
from backends.celery import CeleryBeat, CeleryWorker
from backends.registry import resolve
from tui.engine.child import Child, State
from tui.engine.supervisor import Supervisor
from tui.project import build_entry

Supervise = Callable[..., Awaitable[Supervisor]]
BROKER = "redis://127.0.0.1:6379/7"
WORKER = "django_prodserver.backends.celery.CeleryWorker"
BEAT = "django_prodserver.backends.workers.celery.CeleryBeat"  # the 3.x spelling
APP = "djproject.celery:app"
DJPROJECT = Path(__file__).resolve().parent / "djproject"


def _why_not() -> str | None:
    if find_spec("celery") is None or find_spec("redis") is None:
        return "celery[redis] is not installed (pip install -e '.[celery]' in the checkout)"
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        return f"no Redis answers at {BROKER} ({e})"
    return None


pytestmark = needs("Redis and celery[redis]", _why_not)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    """The project's Celery tasks, importable here too, so tests send them with ``.delay()``."""
    import redis

    monkeypatch.setenv("CELERY_TEST_BROKER", BROKER)  # the children read it as well
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # beat's schedule file
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "djproject.settings")
    monkeypatch.syspath_prepend(str(DJPROJECT))
    db = redis.Redis.from_url(BROKER)
    db.flushdb()
    yield importlib.import_module("testapp.celery_tasks")
    db.flushdb()


def lines(child: Child) -> list[str]:
    return [line.text for line in child.ring.since(0)]


def pool_size(child: Child) -> int:
    """Celery's prefork pool processes are the main process's children."""
    try:
        return len(psutil.Process(child.pid or 0).children())
    except psutil.NoSuchProcess:
        return -1


async def ready(child: Child) -> None:
    await until(lambda: any(" ready." in t for t in lines(child)), timeout=30, what="ready.")


async def result(async_result: Any, timeout: float = 20) -> Any:
    """A Celery result without blocking the loop the supervisor reads its children on."""
    return await asyncio.to_thread(async_result.get, timeout=timeout)


async def test_worker_runs_tasks_scales_its_pool_live_and_drains_on_stop(
    djproject: Path, supervise: Supervise, tasks: ModuleType
) -> None:
    # gossip and mingle only talk to other workers: leaving them out saves a second at start
    args = {"concurrency": 2, "without-mingle": None, "without-gossip": None}
    sup = await supervise(entry(djproject, "celery", WORKER, args, APP=APP))
    child = sup["celery"]
    await ready(child)
    await until(lambda: pool_size(child) == 2, what="2 pool processes")

    sums = [tasks.add.delay(i, i) for i in range(10)]
    assert [await result(r) for r in sums] == [2 * i for i in range(10)]
    with pytest.raises(ValueError, match="boom"):
        await result(tasks.fail.delay("boom"))
    await until(lambda: any("ValueError: boom" in t for t in lines(child)), what="traceback")
    # running only once it said "ready.", and its task outcomes are counted for the pane
    assert child.ready_after is not None
    assert any(t.startswith("-- ready in") for t in lines(child))
    events = child.events
    assert events is not None
    await until(lambda: events.by_kind() == {"succeeded": 10, "raised": 1}, what="outcomes")

    assert await sup.scale("celery", "concurrency", 4)
    await until(lambda: pool_size(child) == 4, what="pool grown to 4")
    assert await sup.scale("celery", "concurrency", 1)
    await until(lambda: pool_size(child) == 1, what="pool shrunk to 1")
    assert sum(t.strip() in ("pool will grow", "pool will shrink") for t in lines(child)) == 2
    assert await result(tasks.add.delay(20, 22)) == 42

    # a task running when the stop comes finishes: the warm shutdown waits for it
    busy = tasks.sleep.delay(1.5)
    await until(lambda: any("sleep[" in t and "received" in t for t in lines(child)), what="busy")
    pids = tree(child.pid or 0)
    assert len(pids) == 2
    assert await sup.stop_all()
    assert isinstance(await result(busy, timeout=5), int)  # the running task finished
    assert child.state is State.STOPPED
    assert child.last_exit is not None and child.last_exit.code == 0  # a warm shutdown
    assert not any(map(is_alive, pids))


async def test_beat_sends_its_schedule_and_stops_clean(
    djproject: Path, supervise: Supervise, tasks: ModuleType, tmp_path: Path
) -> None:
    import redis

    sup = await supervise(entry(djproject, "beat", BEAT, {"max-interval": 1}, APP=APP))
    child = sup["beat"]
    queue = redis.Redis.from_url(BROKER)
    await until(lambda: queue.llen("celery") >= 2, timeout=20, what="scheduled tasks queued")
    pids = tree(child.pid or 0)
    assert pids
    assert await sup.stop_all()
    assert not any(map(is_alive, pids))
    folder = tmp_path / "state" / "prodserver-tui" / "celerybeat"
    assert any(p.name.startswith("beat-") for p in folder.iterdir())  # not in the project
    # private: the folders it made 0700 (0755 before), the schedule beat wrote 0600 (0644)
    assert {oct(p.stat().st_mode & 0o777) for p in (folder, folder.parent)} == {"0o700"}
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o600"}
    assert not list(djproject.glob("celerybeat-schedule*"))


def test_missing_app_is_one_line_naming_the_fix(djproject: Path) -> None:
    project = Project("djproject.settings", str(djproject))
    built = build_entry("celery", {"BACKEND": WORKER, "ARGS": {}}, project)
    assert built.error == (
        'celery: APP is missing; name the Celery app in the entry, e.g. "APP": "mysite.celery.app"'
    )


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        (WORKER, CeleryWorker),
        ("django_prodserver.backends.workers.celery.CeleryWorker", CeleryWorker),
        ("django_prodserver.backends.celery.CeleryBeat", CeleryBeat),
        (BEAT, CeleryBeat),
    ],
)
def test_both_spellings(path: str, cls: type) -> None:
    assert resolve("x", path) is cls


def test_raw_args_feed_the_knob_and_the_node_name(djproject: Path) -> None:
    worker = entry(djproject, "w", WORKER, "-c 3 -n fast@box -Q a,b", APP="mysite.celery.app")
    backend = worker.backend
    assert isinstance(backend, CeleryWorker)
    assert backend.scale == {"concurrency": 3}
    argv = worker.launch().argv
    assert argv[1:5] == ("-m", "celery", "--app=mysite.celery.app", "worker")
    assert {"--concurrency=3", "--hostname=fast@box", "-Q", "a,b"} <= set(argv)
    assert backend.scale_argv("concurrency", 3, 1, 123)[4:] == [
        "control",
        "pool_shrink",
        "2",
        "--destination=fast@box",
    ]
    threads = entry(djproject, "t", WORKER, {"pool": "threads"}, APP="mysite.celery.app")
    with pytest.raises(Exception, match="cannot change while it runs"):
        threads.backend.scale_argv("concurrency", 2, 3, 123)  # type: ignore[union-attr]


def test_pool_size_defaults_to_the_settings_then_the_cpu_count(djproject: Path) -> None:
    def pool(settings: object) -> dict[str, int] | None:
        project = Project("djproject.settings", str(djproject), settings=settings)
        backend = build_entry("w", {"BACKEND": WORKER, "APP": APP}, project).backend
        return backend.scale if backend else None

    assert pool(SimpleNamespace(CELERY_WORKER_CONCURRENCY=3)) == {"concurrency": 3}
    assert pool(SimpleNamespace()) == {"concurrency": os.cpu_count()}


async def test_a_scale_the_worker_does_not_answer_says_why(
    djproject: Path, supervise: Supervise, tasks: ModuleType
) -> None:
    """A stopped worker answers no remote control: the scale cannot converge, and the note
    and the pane say so (and why) instead of a silent count that is never reached."""
    from tui.widgets.pane import knob_part

    args = {"concurrency": 2, "without-mingle": None, "without-gossip": None}
    sup = await supervise(entry(djproject, "celery", WORKER, args, APP=APP))
    child = sup["celery"]
    await ready(child)
    await until(lambda: pool_size(child) == 2, what="2 pool processes")
    main = psutil.Process(child.pid or 0)
    main.suspend()
    try:
        assert await sup.scale("celery", "concurrency", 4) is False
        (view,) = child.scaler.views()
        assert (view.observed, view.desired, view.converging) == (2, 4, False)
        assert view.why is not None and "No nodes replied" in view.why, view.why
        shown = knob_part(view)[0]
        assert shown.startswith("concurrency 2→4 stuck: the scaling command failed"), shown
        assert any(t.startswith("-- scale concurrency 2→4 stuck: ") for t in lines(child))
    finally:
        main.resume()
