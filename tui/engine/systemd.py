"""Run under systemd: tell it when the engine is ready or stopping, and write its unit file.

``notify`` is sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``. systemd
sets that only for a ``Type=notify`` service, so anywhere else it is a no-op. A socket that
is gone or full never stops the engine: the failure is logged once and the engine goes on,
because the processes matter more than systemd's view of them.

``unit`` writes the service the engine runs best under: ``KillMode=mixed`` gives SIGTERM to
the engine alone, which stops each child by its own rule (task workers drain, servers finish
their requests); systemd's SIGKILL to what is left comes only after the longest grace period.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

_told: set[str] = set()  # failures already logged: a STATUS on every change must not flood


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``STATUS=...``) to systemd; False when not under a
    ``Type=notify`` service, or when the socket cannot take it (logged once, never raised)."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where:
        return False
    # "@name" is Linux's abstract namespace, written with a leading NUL byte.
    address = "\0" + where[1:] if where.startswith("@") else where
    if not address.startswith(("/", "\0")):
        _tell(f"NOTIFY_SOCKET={where!r} is not a Unix socket address; systemd is not told")
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a full queue is an error now, never a stalled engine
            sock.sendto(message.encode(), address)
    except OSError as e:
        _tell(f"cannot tell systemd {message.split('=')[0]} at NOTIFY_SOCKET={where}: {e}")
        return False
    return True


def ready() -> bool:
    """Every entry is running or in config error: ``systemctl start`` returns now."""
    return notify("READY=1")


def stopping() -> bool:
    return notify("STOPPING=1")


def status(states: Iterable[str]) -> bool:
    """``systemctl status`` shows e.g. "4 running, 1 backoff" (``State`` values are str)."""
    counts = Counter(states)
    return notify("STATUS=" + ", ".join(f"{n} {state}" for state, n in counts.items()))


def _tell(line: str) -> None:
    if line not in _told:
        _told.add(line)
        log.warning("prodserver-tui: %s", line)


# -- the unit file --------------------------------------------------------------------------

STOP_MARGIN = 10  # s after the longest grace: the engine SIGKILLs, reaps, closes its logs
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_UNIT_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # systemd.unit(5), without templates' "@"


class UnitError(ValueError):
    """A value the unit cannot hold, e.g. a path with a newline."""


def program() -> list[str]:
    """How systemd starts this same prodserver-tui: the ``prodserver-tui`` script beside the
    running python, else that python with ``-m tui.cli``. ``sys.executable`` is not resolved:
    a virtualenv's python is a symlink, and resolved it would lose the virtualenv."""
    python = Path(sys.executable)
    script = python.parent / "prodserver-tui"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(python), "-P", "-m", "tui.cli"]


def stop_timeout(graces: Iterable[float]) -> int:
    """``TimeoutStopSec``: every entry stops at once, so the longest grace plus a margin."""
    return math.ceil(max(graces, default=10.0)) + STOP_MARGIN


def unit(
    *,
    name: str,
    description: str,
    exec_start: list[str],
    working_directory: Path,
    stop_timeout: int,
    socket: Path,
    log_folder: Path,
    user: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> str:
    """The text of ``NAME.service``: a user unit, or a system unit run as ``user``.

    The engine is told its control socket (``PRODSERVER_TUI_SOCKET``), so it serves where the
    comment says and where ``attach`` looks: a system service has no ``XDG_RUNTIME_DIR`` and
    would derive another path. No ``EnvironmentFile=``: the engine loads the project's
    ``.env`` itself, from ``WorkingDirectory``, with python-dotenv's rules, as it does in a
    terminal; systemd's parser differs, and what it set would win over the file.
    """
    if not _UNIT_NAME.fullmatch(name):
        raise UnitError(
            f"unit name {name!r} may hold only letters, digits and _ . : -; e.g. 'mysite'"
        )
    if not exec_start or not Path(exec_start[0]).is_absolute():
        raise UnitError(f"ExecStart needs an absolute program path, got {exec_start[:1]}")
    if any(c in exec_start[0] for c in "\"'\\"):  # systemd: "contains special characters"
        raise UnitError(
            f"systemd refuses a program path with a quote or backslash, got {exec_start[0]!r}; "
            "install prodserver-tui into a folder without them"
        )
    if not working_directory.is_absolute():
        raise UnitError(f"WorkingDirectory must be absolute, got {str(working_directory)!r}")
    if user is not None and not _USER_NAME.fullmatch(user):
        raise UnitError(f"User={user!r} is not a user name; give the account's login name")
    env = {"PRODSERVER_TUI_SOCKET": str(socket), **(environment or {})}
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise UnitError(f"environment name {key!r} is not a variable name (A-Z, 0-9, _)")
    system = user is not None
    lines = [
        f"# {_comment(description)}",
        f"# Control socket: {_comment(str(socket))}",
        f"# Log files: {_comment(str(log_folder))}",
        "#",
        *_recipe(_comment(name), system),
        "",
        "[Unit]",
        f"Description={_value(description)}",
        *(["Wants=network-online.target", "After=network-online.target"] if system else []),
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart="
        + " ".join([_quote(exec_start[0]), *(_quote(w, args=True) for w in exec_start[1:])]),
        f"WorkingDirectory={_value(str(working_directory))}",
        *(f"Environment={_quote(f'{k}={v}')}" for k, v in env.items()),
        *([f"User={user}"] if user else []),
        "KillMode=mixed",
        f"TimeoutStopSec={stop_timeout}",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",  # a settings or command-line error: a retry fails again
        f"SyslogIdentifier={_value(name)}",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
    ]
    return "\n".join(lines) + "\n"


def _recipe(name: str, system: bool) -> list[str]:
    if system:
        return [
            "# Install system-wide (as root):",
            f"#   save this as /etc/systemd/system/{name}.service",
            f"#   systemctl daemon-reload && systemctl enable --now {name}",
        ]
    return [
        "# Install for your user (and keep it running while you are logged out):",
        f"#   save this as ~/.config/systemd/user/{name}.service",
        f"#   systemctl --user daemon-reload && systemctl --user enable --now {name}",
        "#   loginctl enable-linger $USER",
    ]


def _checked(text: str) -> str:
    """A line break would end the setting and start another: refused, as is every control
    character, which no path or name of ours needs."""
    if not text.isprintable():
        what = "a newline" if "\n" in text or "\r" in text else "a control character"
        raise UnitError(f"{text!r} holds {what}, which a systemd unit cannot hold; rename it")
    return text


def _comment(text: str) -> str:
    return _checked(text)


def _value(text: str) -> str:
    """A setting systemd takes as the rest of the line (paths, names): ``%`` is a specifier,
    surrounding whitespace is stripped and a trailing backslash continues the line."""
    if text != text.strip() or text.endswith("\\"):
        raise UnitError(
            f"{text!r} starts or ends with a space or ends with a backslash, which systemd "
            "would drop or misread; rename it"
        )
    return _checked(text).replace("%", "%%")


def _quote(word: str, args: bool = False) -> str:
    """One word of ``ExecStart=`` or ``Environment=``, double-quoted per systemd.syntax(7):
    backslash and quote escaped, ``%`` doubled (specifiers); in the arguments of a command
    line also ``$`` (variable expansion), which the program path and ``Environment=`` skip."""
    word = _checked(word).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if args:
        word = word.replace("$", "$$")
    return f'"{word}"'
