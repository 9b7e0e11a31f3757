"""Where a project's engine lives: its control socket, its state folder, and the lock that
makes it the only engine of that project.

One engine per project (folder and settings module): clients find it by deriving the same
path, so the path is a pure function of the project plus an explicit override (``--socket``,
``PRODSERVER_TUI_SOCKET``). The socket sits in a 0700 folder checked by ``backends.private``
and is itself 0600, and both ends check the other's uid with ``SO_PEERCRED``: the file modes
keep other users out on Linux, the credential check keeps them out anywhere, and a client
never talks to an engine run by another user (it would believe what that engine says).

Two engines starting at once both see no socket; the lock file in the state folder, held with
``flock`` for the engine's life and never inherited by its children, decides which one runs
before either binds. It also holds the engine's pid for the moments before the socket answers.
A socket nobody answers on was left by a killed engine: it is replaced, never trusted. Anything
else at the socket path (a file, another user's socket) is reported and left alone.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import socket as _socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from backends import private
from backends.private import APP, runtime_folder, state_home

ENV_SOCKET = "PRODSERVER_TUI_SOCKET"
SUN_PATH_MAX = 107  # Linux sun_path is 108 bytes including the terminating NUL
LOCK_NAME = "engine.lock"
_LOCK_WAIT = 0.2  # seconds: outlasts a probe's shared lock, never a live engine's
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class PlaceError(OSError):
    """One line: which path, what is wrong with it, and the fix."""


class AlreadyRunning(PlaceError):
    """An engine runs for this project already; ``pid`` is None when it cannot be told."""

    def __init__(self, place: Place, pid: int | None) -> None:
        self.place = place
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"already running ({who}, socket {place.socket})")


class NotRunning(PlaceError):
    """No engine answers for this project."""

    def __init__(self, place: Place) -> None:
        self.place = place
        super().__init__(
            f"no engine is running for {place.project} (socket {place.socket}): "
            "start one with `prodserver-tui up`"
        )


@dataclass(frozen=True)
class Place:
    project: Path  # absolute project folder, for messages
    socket: Path
    state: Path  # log files, the engine's own log, the lock with its pid
    key: str  # readable and unique: folder name, settings module, hash of both
    socket_overridden: bool = False  # chosen by the user: its folder is checked, not narrowed


def place_for(project_dir: Path, settings_module: str, socket: str | None = None) -> Place:
    """The place of the engine for this project; ``socket`` is ``--socket PATH``."""
    project = Path(os.path.abspath(project_dir))
    digest = hashlib.sha256(f"{project}\0{settings_module}".encode()).hexdigest()[:8]
    # Short parts: the whole socket path must fit in sun_path, even under a deep home folder.
    key = f"{_slug(project.name, 16)}-{_slug(settings_module, 24)}-{digest}"
    state = state_home() / APP / key
    chosen = socket or os.environ.get(ENV_SOCKET) or None
    if chosen:
        path = Path(os.path.abspath(os.path.expanduser(chosen)))
    else:
        path = runtime_folder() / f"{key}.sock"
    size = len(os.fsencode(path))
    if size > SUN_PATH_MAX:
        raise PlaceError(
            f"socket path {path} is {size} bytes, longer than the {SUN_PATH_MAX} a Unix socket "
            f"allows; choose a shorter one with --socket PATH or {ENV_SOCKET}=PATH"
        )
    return Place(project, path, state, key, socket_overridden=bool(chosen))


def _slug(text: str, most: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:most] or "_"


class Listener:
    """A bound, listening socket and the lock that makes this process the project's engine.

    Pass ``socket`` to ``asyncio.start_unix_server(sock=...)``. ``replaced_stale`` says a socket
    left by a killed engine was removed first (worth one log line).
    """

    def __init__(
        self, place: Place, sock: _socket.socket, lock_fd: int, replaced_stale: bool
    ) -> None:
        self.place = place
        self.socket = sock
        self.replaced_stale = replaced_stale
        self._lock_fd: int | None = lock_fd
        info = os.lstat(place.socket)
        self._identity = (info.st_dev, info.st_ino)

    def close(self) -> None:
        """Close the socket, remove its file if it is still the one we bound, drop the lock."""
        if self._lock_fd is None:
            return
        self.socket.close()
        try:
            info = os.lstat(self.place.socket)
        except FileNotFoundError:
            pass
        else:
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self.place.socket)
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = None

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(place: Place, backlog: int = 16) -> Listener:
    """Become the project's engine: take the lock, then bind the socket (0600, in a 0700 folder).

    Raises ``AlreadyRunning`` when another engine holds the lock or answers on the socket, and
    ``PlaceError`` for an unsafe folder or something that is not our stale socket at the path.
    """
    _private_folder(place.state)
    _socket_folder(place)
    lock_fd = _take_lock(place)
    try:
        replaced = _clear_path(place)
        sock = _bind(place, backlog)
    except BaseException:
        os.close(lock_fd)
        raise
    return Listener(place, sock, lock_fd, replaced)


def connect(place: Place, timeout: float | None = 5.0) -> _socket.socket:
    """A connected client socket to the project's engine (blocking, with ``timeout``).

    Raises ``NotRunning`` when nothing answers (no socket, or a stale one), and ``PlaceError``
    when the socket is not ours to use or the engine runs as another user.
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(place.socket))
    except (FileNotFoundError, ConnectionRefusedError) as e:
        sock.close()
        raise NotRunning(place) from e
    except PermissionError as e:
        sock.close()
        raise PlaceError(
            f"socket {place.socket} cannot be used by this user (uid {os.geteuid()}); "
            "run as the user who started the engine"
        ) from e
    except OSError as e:
        sock.close()
        raise PlaceError(f"cannot connect to {place.socket} ({e.strerror or e})") from e
    uid = peer_uid(sock)
    if not allowed(uid):
        sock.close()
        raise PlaceError(
            f"the engine on {place.socket} runs as uid {uid}, not as this user "
            f"(uid {os.geteuid()}) or root, so it is not trusted; remove that socket or use "
            "another one with --socket PATH"
        )
    return sock


class _HasSockopt(Protocol):
    """A socket, or the ``TransportSocket`` that asyncio's ``get_extra_info("socket")`` gives."""

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def peer_uid(sock: _HasSockopt) -> int:
    """The uid of the process at the other end of a connected Unix socket, from the kernel."""
    return _peer(sock)[1]


def peer_pid(sock: _HasSockopt) -> int:
    """The pid of the process that connected (client) or bound (engine) the other end."""
    return _peer(sock)[0]


def allowed(uid: int) -> bool:
    """Whether a peer may talk to us: the same user, or root (who can read our files anyway)."""
    return uid in (os.geteuid(), 0)


def engine_pid(place: Place) -> int | None:
    """The running engine's pid: from the kernel when its socket answers, else from the lock
    file while the lock is held (an engine that has not bound yet); None when none runs."""
    try:
        with connect(place, timeout=1.0) as sock:
            return peer_pid(sock)
    except PlaceError:
        pass
    try:
        fd = os.open(place.state / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:  # a shared lock we can take means nobody holds it: what it says is stale
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        return None
    finally:
        os.close(fd)


def _peer(sock: _HasSockopt) -> tuple[int, int, int]:
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(raw)
    return pid, uid, gid


def _private_folder(path: Path) -> Path:
    try:
        return private.folder(path)
    except private.UnsafePath as e:
        raise PlaceError(str(e)) from e


def _socket_folder(place: Place) -> None:
    """Our own folders are made 0700; a folder the user chose is checked but never narrowed."""
    folder = place.socket.parent
    if not place.socket_overridden or not folder.exists():
        _private_folder(folder)
        return
    try:
        private.folder(folder, make=False)
    except private.UnsafePath as e:
        raise PlaceError(str(e)) from e


def _take_lock(place: Place) -> int:
    try:
        path = private.file(place.state / LOCK_NAME, make=True)
    except private.UnsafePath as e:
        raise PlaceError(str(e)) from e
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    deadline = time.monotonic() + _LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise AlreadyRunning(place, engine_pid(place)) from None
            time.sleep(0.01)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _clear_path(place: Place) -> bool:
    """Make way for our socket; True when a stale one was removed."""
    path = place.socket
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise PlaceError(
            f"{path} exists and is not a socket, so it is left alone; remove it or choose "
            f"another path with --socket PATH or {ENV_SOCKET}=PATH"
        )
    if info.st_uid != os.geteuid():
        raise PlaceError(
            f"socket {path} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}), so it is left alone; remove it or choose another path "
            f"with --socket PATH or {ENV_SOCKET}=PATH"
        )
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except ConnectionRefusedError:
        pass  # stale: its engine is gone
    except OSError as e:
        if e.errno != errno.ECONNREFUSED:
            raise PlaceError(f"cannot tell whether {path} is in use ({e.strerror or e})") from e
    else:
        # Something answers though we hold the lock: an engine with another state folder.
        raise AlreadyRunning(place, peer_pid(probe))
    finally:
        probe.close()
    os.unlink(path)
    return True


def _bind(place: Place, backlog: int) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    old = os.umask(0o177)  # the file is born 0600: never a moment with a wider mode
    try:
        sock.bind(os.fspath(place.socket))
    except OSError as e:
        sock.close()
        raise PlaceError(f"cannot bind {place.socket} ({e.strerror or e})") from e
    finally:
        os.umask(old)
    info = os.lstat(place.socket)
    if stat.S_IMODE(info.st_mode) != 0o600 or info.st_uid != os.geteuid():
        sock.close()
        os.unlink(place.socket)
        raise PlaceError(
            f"socket {place.socket} came out with mode {stat.S_IMODE(info.st_mode):o} and uid "
            f"{info.st_uid}, not 600 and {os.geteuid()}; check the file system of its folder"
        )
    sock.listen(backlog)
    return sock
