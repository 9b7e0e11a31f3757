"""CPU and memory of each entry's whole process tree, sampled off the event loop.

gunicorn's workers, a task worker's processes and an npm script's node children all count:
what a user pays for is the tree, not the one pid the console started. psutil ``Process``
objects are cached per pid because ``cpu_percent`` measures against the previous call. The
descendants seen here are remembered, so a grandchild that left the process group (or whose
parent died) can still be killed when its entry stops.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Usage:
    cpu: float  # percent of one core, summed over the tree
    rss: int  # bytes, summed
    uss: int | None  # bytes unique to the tree, where the OS lets us read it
    processes: int  # size of the tree
    children: int  # direct children of the main process: gunicorn's workers, our worker's
    threads: int  # OS threads over the tree
    pids: frozenset[int]  # the tree, to attribute task statistics to this entry


IDLE_CPU = 1.0  # % of one core: below it a tree only wakes for timers (one 10 ms tick a second)


def quiet(before: Usage | None, now: Usage) -> bool:
    """An idle tree that did not change since the previous sample: it may be sampled less
    often. Memory is left out: a process that does not run does not grow."""
    return (
        before is not None
        and now.cpu < IDLE_CPU
        and before.cpu < IDLE_CPU
        and now.pids == before.pids
        and now.threads == before.threads
    )


class Sampler:
    USS_EVERY = 5  # USS reads /proc/PID/smaps_rollup, the costliest read: every 5th sample

    def __init__(self) -> None:
        self._uss: dict[str, int | None] = {}
        self._samples = 0
        self._cache: dict[int, psutil.Process] = {}
        self._trees: dict[int, set[psutil.Process]] = {}  # root pid -> descendants seen
        self._lock = threading.Lock()

    def sample(self, roots: dict[str, int]) -> dict[str, Usage]:
        """Blocking (reads /proc): call it from a thread."""
        usage = {}
        live: set[int] = set()
        children = children_map()  # one scan of /proc for every entry, not one each
        with_uss = self._samples % self.USS_EVERY == 0
        self._samples += 1
        for name, pid in roots.items():
            tree = self._tree(pid, children)
            live.update(p.pid for p in tree)
            measured = _measure(tree, pid, with_uss)
            if with_uss or name not in self._uss:
                self._uss[name] = measured.uss
            usage[name] = dataclasses.replace(measured, uss=self._uss[name])
        with self._lock:
            self._cache = {pid: p for pid, p in self._cache.items() if pid in live}
        return usage

    def descendants(self, pid: int) -> list[psutil.Process]:
        """Every descendant of ``pid`` alive now, including ones seen earlier that left its tree."""
        found = set(self._children(pid, children_map()))
        with self._lock:
            found |= self._trees.get(pid, set())
        return [p for p in found if _running(p)]

    def forget(self, pid: int) -> list[psutil.Process]:
        """The root is gone: hand back its descendants still alive, and stop tracking them."""
        found = self.descendants(pid)
        with self._lock:
            self._trees.pop(pid, None)
            self._cache.pop(pid, None)
        return found

    def _tree(self, pid: int, children_of: dict[int, list[int]]) -> list[psutil.Process]:
        root = self._process(pid)
        if root is None:
            return []
        children = self._children(pid, children_of)
        with self._lock:
            seen = self._trees.setdefault(pid, set())
            seen.update(children)
            seen -= {p for p in seen if not _running(p)}
            tree = [root, *seen]
        return tree

    def _process(self, pid: int) -> psutil.Process | None:
        with self._lock:
            proc = self._cache.get(pid)
        if proc is not None and _running(proc):
            return proc
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        with self._lock:
            self._cache[pid] = proc
        return proc

    def _children(self, pid: int, children_of: dict[int, list[int]]) -> list[psutil.Process]:
        found = (self._process(child) for child in descendant_pids(pid, children_of))
        return [proc for proc in found if proc is not None]


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from one pass over /proc.

    psutil's ``children`` makes one pass per call, which for every entry every second was
    most of the console's idle cost; reading each /proc/PID/stat once is 3x cheaper still
    than ``process_iter``. Where there is no /proc, psutil does it.
    """
    children: dict[int, list[int]] = {}
    if not os.path.isdir("/proc/self"):
        for proc in psutil.process_iter(["ppid"]):
            children.setdefault(proc.info["ppid"], []).append(proc.pid)
        return children
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                ppid = int(stat.read().rpartition(b")")[2].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile, or unreadable
            continue
        children.setdefault(ppid, []).append(int(name))
    return children


def descendant_pids(pid: int, children_of: dict[int, list[int]]) -> list[int]:
    found: list[int] = []
    todo = list(children_of.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children_of.get(child, ()))
    return found


def _running(proc: psutil.Process) -> bool:
    """``is_running`` also checks the create time, so a reused pid is not mistaken for ours."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _measure(tree: list[psutil.Process], root: int, with_uss: bool) -> Usage:
    cpu = 0.0
    rss = 0
    uss: int | None = 0 if with_uss else None
    count = children = threads = 0
    pids = set()
    for proc in tree:
        try:
            with proc.oneshot():
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                children += proc.ppid() == root
                pids.add(proc.pid)
                if uss is not None:
                    try:
                        uss += proc.memory_full_info().uss
                    except psutil.AccessDenied:
                        uss = None
            count += 1
        except psutil.Error:
            continue
    return Usage(
        cpu=cpu,
        rss=rss,
        uss=uss,
        processes=count,
        children=children,
        threads=threads,
        pids=frozenset(pids),
    )
