"""CPU and memory of each entry's whole process tree, sampled off the event loop.

gunicorn's workers, a task worker's processes and an npm script's node children all count:
what a user pays for is the tree, not the one pid the console started. psutil ``Process``
objects are cached per pid because ``cpu_percent`` measures against the previous call. The
descendants seen here are remembered, so a grandchild that left the process group (or whose
parent died) can still be killed when its entry stops.

A console left open for days samples mostly idle trees, so a sample reads as little as it
can: the kernel's lists of children rather than every process on the machine, three small
files per process, and no check of a process the kernel has just listed in the tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import psutil

from tui.engine.views import Usage

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
    def __init__(self) -> None:
        self._cache: dict[int, psutil.Process] = {}
        self._trees: dict[int, set[psutil.Process]] = {}  # root pid -> descendants seen
        self._lock = threading.Lock()

    def sample(self, roots: dict[str, int]) -> dict[str, Usage]:
        """Blocking (reads /proc): call it from a thread."""
        usage = {}
        live: set[int] = set()
        # The kernel's lists of children where it keeps them; else one scan of /proc for
        # every entry, not one each.
        children = None if KERNEL_CHILDREN else children_map()
        for name, pid in roots.items():
            tree = self._tree(pid, children)
            live.update(p.pid for p in tree)
            direct = kernel_children(pid) if children is None else children.get(pid, [])
            usage[name] = _measure(tree, set(direct))
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

    def _tree(self, pid: int, children_of: dict[int, list[int]] | None) -> list[psutil.Process]:
        root = self._process(pid)
        if root is None:
            return []
        children = set(self._children(pid, children_of))
        with self._lock:
            seen = self._trees.setdefault(pid, set())
            # Listed by the kernel just now: in the tree. Only those that left it are checked.
            seen -= {p for p in seen - children if not _running(p)}
            seen |= children
            tree = [root, *seen]
        return tree

    def _process(self, pid: int) -> psutil.Process | None:
        """Cached: the root cannot be reused before we reap it, and a descendant is listed
        by the kernel each sample (``descendants`` checks every one before a kill)."""
        with self._lock:
            proc = self._cache.get(pid)
        if proc is not None:
            return proc
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        with self._lock:
            self._cache[pid] = proc
        return proc

    def _children(self, pid: int, children_of: dict[int, list[int]] | None) -> list[psutil.Process]:
        pids = kernel_descendants(pid) if children_of is None else descendant_pids(pid, children_of)
        found = (self._process(child) for child in pids)
        return [proc for proc in found if proc is not None]


def kernel_children(pid: int) -> list[int]:
    """Direct children of ``pid`` as the kernel lists them per thread (Linux): a few small
    reads per tree instead of a pass over every process on the machine, which for a few
    idle entries was nearly all of a sample's cost. The kernel warns that the lists may miss
    a process being created or exiting meanwhile: the next sample sees it, and stopping an
    entry (``Sampler.descendants``) scans every process instead."""
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", "rb", buffering=0) as listed:
                found += map(int, listed.read().split())
    except (OSError, ValueError):  # gone meanwhile
        pass
    return found


def kernel_descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = kernel_children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += kernel_children(child)
    return found


KERNEL_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


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
            with open(f"/proc/{name}/stat", "rb", buffering=0) as stat:
                ppid = int(stat.read().rpartition(b")")[2].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile, or unreadable
            continue
        children.setdefault(ppid, []).append(int(name))
    return children


def tree_pids(pid: int) -> Iterator[int]:
    """``pid``, then its descendants, listed only if the caller reads on: a question the root
    answers (gunicorn's master holds its workers' listening socket) lists no children."""
    yield pid
    yield from kernel_descendants(pid) if KERNEL_CHILDREN else descendant_pids(pid, children_map())


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


def _measure(tree: list[psutil.Process], direct: set[int]) -> Usage:
    """``direct``: the root's children as listed now (psutil's ``ppid`` checks the pid for
    reuse, which costs more than the rest of a process's reading)."""
    cpu = 0.0
    rss = 0
    count = children = threads = 0
    pids = set()
    for proc in tree:
        try:
            with proc.oneshot():
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                children += proc.pid in direct
                pids.add(proc.pid)
            count += 1
        except psutil.Error:
            continue
    return Usage(
        cpu=cpu,
        rss=rss,
        processes=count,
        children=children,
        threads=threads,
        pids=frozenset(pids),
    )
