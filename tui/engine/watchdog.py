"""Stops every child and grandchild if the console dies without doing so (even by SIGKILL).

A parent-death signal only reaches direct children (a gunicorn master's workers outlived it
by seconds in a trial), so a separate process holds the read end of a pipe from the console.
The console writes ``pid ticks stop_signal grace stop_group`` for every child it starts, and
``+ root_pid pid ticks`` for each descendant its sampler sees (one that left the tree, say a
daemonised grandchild, could not be found again later). When the pipe closes (the console is
gone, however it went) this process stops every child the way the console would have: its
stop signal to its group (or to the main process alone, when the backend says so, as Celery's
does), each process once, and SIGKILL to whatever of that child's tree is left when its own
grace period is over. Trees are kept apart so that a stubborn child's short grace never cuts
short a task worker that is still draining.

Identity, not numbers: a process is known by its pid *and* its start time in clock ticks since
boot (`backends.procid`: field 22 of /proc/PID/stat, which a wall-clock step cannot move), and
is signalled through a pidfd opened before that check, so a pid reused by an unrelated program
is never hit. A process group is signalled only while a member proven ours is in it (a group
number cannot be reused while anyone is in the group).

Idle, it costs nothing: it blocks in ``poll`` on the pipe and on a pidfd per child (readable
when that child ends), and does no periodic scan; it reads /proc only when told something
and when stopping. Run as ``python -m tui.engine.watchdog`` in its own session so a terminal's
signals do not reach it; the console starts a new one if it dies.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass

from backends import procid

Key = tuple[int, int]  # pid, start time in clock ticks: a pid alone may be reused
#: After a child starts, its tree is looked at this long after (seconds): a tree forms while
#: it starts, and the kernel may kill the child (its parent-death signal) before we can look.
#: Later changes come from the console's sampler (``+`` lines).
LOOKS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Stop:
    """How the console would stop one child: what it sends first and how long it waits."""

    signal: int
    grace: float
    group: bool  # the signal goes to the whole process group, not only the main process


def _scan() -> dict[int, procid.Stat]:
    """Every process, from one pass over /proc (only when stopping: never while idle)."""
    found: dict[int, procid.Stat] = {}
    if not os.path.isdir("/proc/self"):  # no /proc: roots are still signalled by identity
        return found
    for name in os.listdir("/proc"):
        if name.isdigit() and (now := procid.stat(int(name))) is not None:
            found[int(name)] = now
    return found


def _alive(key: Key) -> bool:
    """A zombie is not alive: with the console gone, its orphans wait for init to reap them,
    and some inits (a container's, this project's CI VM's) take a second or more."""
    now = procid.stat(key[0])
    return now is not None and now.start == key[1] and not now.zombie


def _send(key: Key, sig: int) -> None:
    """Signal one process by identity: the pidfd pins it, its start time proves it is ours."""
    try:
        fd: int | None = os.pidfd_open(key[0])
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfds here (old kernel): check, then by number
        fd = None
    try:
        if _alive(key):
            if fd is None:
                os.kill(key[0], sig)
            else:
                signal.pidfd_send_signal(fd, sig)
    except OSError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def _parse(line: bytes) -> tuple[Key, Stop]:
    pid, ticks, stop_signal, grace, *group = line.split()
    return (int(pid), int(ticks)), Stop(int(stop_signal), float(grace), group != [b"0"])


class Guard:
    """The children the console told us about, their descendants, and how to stop each.

    A child stays here until nothing of its tree is left: when the console dies, the kernel
    kills each child at once (its parent-death signal, ``tui/engine/deathsig.py``), often before
    we hear the pipe close, and what it leaves behind is still stopped by its own rule.
    """

    def __init__(self) -> None:
        self.roots: dict[Key, Stop] = {}
        self.trees: dict[Key, set[Key]] = {}  # root -> its descendants seen so far
        self.pidfds: dict[int, Key] = {}  # a pidfd per root, readable when it ends
        self.looks: dict[Key, list[float]] = {}  # root -> when to look at its tree again

    def hear(self, line: bytes) -> int | None:
        """One line from the console; a new root's pidfd to wait on, if it has one."""
        words = line.split()
        if words[:1] == [b"+"]:
            root_pid, pid, ticks = map(int, words[1:])
            for root, seen in self.trees.items():
                if root[0] == root_pid:
                    seen.add((pid, ticks))
            return None
        root, how = _parse(line)
        if root in self.roots:
            return None
        try:
            fd: int | None = os.pidfd_open(root[0])
        except (AttributeError, OSError):  # gone already, or no pidfds: pruned by checks
            fd = None
        holder = procid.stat(root[0])
        if holder is not None and holder.start != root[1]:  # the pid names another process now
            if fd is not None:
                os.close(fd)
            return None
        self.roots[root] = how
        self.trees[root] = set()
        now = time.monotonic()
        self.looks[root] = [now + after for after in LOOKS]
        if not _alive(root):  # it died before we heard of it (with the console, say):
            self._refresh([root])  # what it left in its group is still to be stopped
        if fd is not None:
            self.pidfds[fd] = root
        return fd

    def ended(self, root: Key) -> None:
        """A child's main process ended: its group's members are remembered now, while they
        still hold the group number (a number is reused only after the pid space wraps)."""
        if root in self.roots:
            self._refresh([root])
        self.prune()

    def timeout(self) -> int:
        """Milliseconds until the next look at a young tree; -1 (block) when there is none."""
        soonest = min((when[0] for when in self.looks.values() if when), default=None)
        if soonest is None:
            return -1
        return max(0, round((soonest - time.monotonic()) * 1000))

    def look(self) -> None:
        """The young trees whose time has come."""
        now = time.monotonic()
        due = [root for root, when in self.looks.items() if when and when[0] <= now]
        for root in due:
            self.looks[root] = [t for t in self.looks[root] if t > now]
        if due:
            self._refresh(due)

    def prune(self) -> None:
        """Forget trees of which nothing is left (the console stops what a child leaves)."""
        for root in list(self.roots):
            self.trees[root] = {key for key in self.trees[root] if _alive(key)}
            if not self.trees[root] and not _alive(root):
                del self.roots[root], self.trees[root], self.looks[root]

    def stop(self) -> None:
        """The console is gone: stop every tree by its own rule, then kill what is left."""
        self._refresh(list(self.roots))
        began = time.monotonic()
        for root, how in self.roots.items():
            self._first_signal(root, how)
        pending = dict(self.roots)
        while pending:
            time.sleep(0.05)
            self._refresh(list(pending))
            for root, how in list(pending.items()):
                if not any(map(_alive, [root, *self.trees[root]])):
                    del pending[root]
                elif time.monotonic() - began > how.grace:
                    self._kill(root)
                    del pending[root]
        for root in self.roots:  # stragglers that outlived the SIGKILL of their group
            self._kill(root)

    def _ours(self, root: Key) -> bool:
        """Group ``root[0]`` still holds a process proven ours, so the number is not reused."""
        for key in (root, *self.trees[root]):
            now = procid.stat(key[0])
            if now is not None and now.start == key[1] and now.pgid == root[0]:
                return True
        return False

    def _refresh(self, roots: list[Key]) -> None:
        """Descendants of every live process of these trees, and the members of their groups:
        a parent that dies re-parents its children away, but they stay in its group. A group
        number is held while anyone is in it, and a tree is forgotten as soon as nothing of it
        is left (``prune``), so the members found here are ours."""
        procs = _scan()
        children: dict[int, list[int]] = {}
        for pid, stat in procs.items():
            children.setdefault(stat.ppid, []).append(pid)
        for root in roots:
            seen = self.trees[root]
            known = [k for k in (root, *seen) if k[0] in procs and procs[k[0]].start == k[1]]
            todo = [child for key in known for child in children.get(key[0], ())]
            todo += [p for p, stat in procs.items() if stat.pgid == root[0]]
            todo = [p for p in todo if procs[p].start >= root[1]]  # none older than the root
            while todo:
                pid = todo.pop()
                key = (pid, procs[pid].start)
                if pid != root[0] and key not in seen and not procs[pid].zombie:
                    seen.add(key)
                    todo.extend(children.get(pid, ()))

    def _first_signal(self, root: Key, how: Stop) -> None:
        """Each process gets the stop signal once: a second copy makes some servers (granian's
        workers) deadlock in their own handler, and makes others (Ctrl-C twice) abort."""
        if not how.group:
            _send(root, how.signal)
            return
        if self._ours(root):  # also reaches members we never saw
            with contextlib.suppress(OSError):
                os.killpg(root[0], how.signal)
        for key in self.trees[root]:
            now = procid.stat(key[0])
            if now is not None and now.pgid != root[0]:  # it left the group: killpg missed it
                _send(key, how.signal)

    def _kill(self, root: Key) -> None:
        if self._ours(root):
            with contextlib.suppress(OSError):
                os.killpg(root[0], signal.SIGKILL)
        for key in (root, *self.trees[root]):
            _send(key, signal.SIGKILL)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    guard = Guard()
    stdin = sys.stdin.fileno()
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    pending = b""
    while True:
        for fd, _event in poller.poll(guard.timeout()):  # idle: blocks, no periodic work
            if fd != stdin:  # a child's pidfd: it ended
                poller.unregister(fd)
                os.close(fd)
                guard.ended(guard.pidfds.pop(fd))
                continue
            data = os.read(stdin, 65536)
            if not data:
                guard.stop()
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                with contextlib.suppress(ValueError):  # a garbled line must not end the guard
                    new = guard.hear(line)
                    if new is not None:
                        poller.register(new, select.POLLIN)
            guard.prune()
        guard.look()


if __name__ == "__main__":
    main()
