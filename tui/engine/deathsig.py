"""A parent-death signal for every child, set without ``preexec_fn``.

If the console and its watchdog are both SIGKILLed, nothing is left to stop the children; the
kernel still can: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in a child makes its parent's death
kill it (``guarded`` says which children get their stop signal instead). Setting it needs
code between fork and exec, and ``preexec_fn`` is unsafe in a process with threads (the
console has several), so each child starts as a tiny Python shim that sets the signal and
then execs the real program in place (same pid, same fds, same environment).
``setpriv --pdeathsig`` does the same but is missing on some systems and cannot do the check
that closes the race: if the console died between fork and ``prctl``, the shim's parent is no
longer the console, and it dies at once instead of running unguarded.

The shim costs one interpreter start-up (``-I -S``: no site, no user environment) plus
ctypes, once per start: about 35 ms on a lightly loaded 2-core machine (setpriv: 3 ms),
small beside the start-up of a Python server. The signal fires when the
*thread* that forked the child ends: asyncio forks from the event loop's thread, the console's
main thread, so it fires when the console dies. It reaches the direct child only; its own
children (gunicorn's workers, the task worker's processes) notice their parent's death by
themselves (gunicorn checks its parent pid, the task worker's pipe from its master closes),
and while the watchdog lives it stops whole trees (``tui/engine/watchdog.py``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]), 0, 0, 0)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):  # the console died before the prctl: follow it
    os.kill(os.getpid(), int(sys.argv[2]))
for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores them at start-up; exec keeps that
    signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as e:
    sys.stderr.write(f"cannot start {sys.argv[3]}: {e.strerror or e}\\n")
    os._exit(127)
"""


def guarded(argv: Sequence[str], stop_group: bool, stop_signal: int) -> list[str]:
    """``argv`` run under a parent-death signal, where the system has one (Linux).

    SIGKILL, unless the program stops gracefully only through its main process
    (``stop_group`` False: Celery's warm shutdown, whose pool dies with a SIGKILLed main and
    takes its running tasks along): that one gets its stop signal, and the watchdog, while it
    lives, escalates after the grace period as for every other tree."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    sig = signal.SIGKILL if stop_group else stop_signal
    return [sys.executable, "-I", "-S", "-c", SHIM, str(os.getpid()), str(int(sig)), *argv]
