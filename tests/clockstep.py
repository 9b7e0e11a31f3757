"""A step of the wall clock as the processes under test see it; the machine's clock is shared
and is never stepped.

What identifies processes sees a step only through /proc/stat's ``btime``: Linux derives the
boot time from the wall clock (now minus uptime), so a step of +N s moves it, and every psutil
``create_time`` with it, by +N s, while /proc/PID/stat's start ticks stay put. Neither easier
tool shows that: a time namespace's offset moves ``btime`` *and* the ticks it shows (create
times stay where they were), and libfaketime changes what a process reads from the clock, not
what the kernel derives from it. So the processes under test run in a mount namespace of their
own where /proc/stat is a copy of the real file bind-mounted over it (lxcfs does the same in
containers), and `SteppedClock.step` rewrites that copy's ``btime`` in place: every process of
the namespace, and its children, sees the step at once. Everything else they read from /proc
is the kernel's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from needs import require

BIND = 'mount --bind "$0" /proc/stat && exec "$@"'


class SteppedClock:
    def __init__(self, folder: Path) -> None:
        """A private /proc/stat in ``folder``; skips (fails in CI) where none can be mounted."""
        self.file = folder / "proc-stat"
        self.file.write_bytes(Path("/proc/stat").read_bytes())
        self.btime = int(re.findall(rb"^btime (\d+)$", self.file.read_bytes(), re.M)[0])
        require("unshare", None if shutil.which("unshare") else "not on PATH (a mount namespace)")
        probe = subprocess.run(  # what is read there as /proc/stat is this very file
            self.argv("stat", "-L", "-c", "%d %i", "/proc/stat"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        ours = f"{self.file.stat().st_dev} {self.file.stat().st_ino}"
        why = f"cannot bind-mount over /proc/stat here: {probe.stderr.strip()[:200]}"
        require("a mount namespace", why if probe.returncode else None)
        assert probe.stdout.split() == ours.split(), (probe.stdout, ours)

    def argv(self, *command: str) -> list[str]:
        """``command`` in the namespace where this clock's /proc/stat is the one read."""
        user = [] if os.geteuid() == 0 else ["--map-root-user"]  # mounting needs root in it
        return ["unshare", *user, "--mount", "sh", "-c", BIND, str(self.file), *command]

    def step(self, seconds: int) -> None:
        """The wall clock jumps ``seconds`` ahead: the boot time moves as far."""
        text = self.file.read_bytes()
        stepped = re.sub(rb"^btime \d+$", b"btime %d" % (self.btime + seconds), text, flags=re.M)
        with self.file.open("r+b") as file:  # the same inode: the bind mount shows it at once
            file.write(stepped)
            file.truncate()
        self.btime += seconds
