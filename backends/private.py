"""Folders and files only this user can change: the one rule for everything the product writes.

A path another local user can change is a path they can fill: a Celery beat schedule is a
pickle, so a schedule file planted in a shared folder runs that user's code as whoever starts
beat (root, in a reproduction). So every folder the product keeps state in is made 0700 and
every file 0600, and anything that exists already is checked before use: the folder or file
itself must belong to this user and be writable by nobody else, and every folder above it must
belong to this user or root and be writable by nobody else (a sticky folder such as /tmp
excepted: there, others cannot move what is ours). Symbolic links are resolved once and the
real path is returned, so a link swapped later cannot redirect what the caller opens; a file
that is itself a link is refused. Nothing ever falls back to a shared folder: a path that
fails is an error that says what is wrong and how to fix it.

``make=False`` checks what exists and creates nothing, for ``--check``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
APP = "prodserver-tui"


def state_home() -> Path:
    """``$XDG_STATE_HOME``, else ``~/.local/state``. A relative ``XDG_*`` is invalid by the
    spec and ignored, as the spec says."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"


def runtime_folder() -> Path:
    """Where this user's sockets live (the engine's control socket, the task workers'
    doorbells): ``$XDG_RUNTIME_DIR/prodserver-tui``, else the state folder's ``run``. One
    rule, so that every process started from one environment meets the others."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(runtime) / APP if os.path.isabs(runtime) else state_home() / APP / "run"


class UnsafePath(OSError):
    """One line: which path, what is wrong with it, and the fix."""


def folder(path: str | os.PathLike[str], *, make: bool = True) -> Path:
    """The real path of a private folder, made (with any missing parent) 0700 when ``make``."""
    real = Path(os.path.realpath(path))
    for part in (*reversed(real.parents), real):
        try:
            info = os.lstat(part)
        except FileNotFoundError:
            if not make:
                return real  # nothing below exists: nothing to check
            _make_folder(part)
            info = os.lstat(part)
        if part == real:
            _check_own(part, info, FOLDER_MODE, make)
        else:
            _check_above(part, info)
    return real


def file(path: str | os.PathLike[str], *, make: bool = False) -> Path:
    """The real path of a private file in an existing folder: if it exists, it must be ours
    (then it is narrowed to 0600 when ``make``); if not and ``make``, it is created empty 0600."""
    given = Path(path)
    where = Path(os.path.realpath(given.parent))
    for part in (*reversed(where.parents), where):
        try:
            _check_above(part, os.lstat(part))
        except FileNotFoundError:
            return where / given.name  # the folder is missing: so is the file
    real = where / given.name
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        if make:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                os.close(os.open(real, flags, FILE_MODE))
            except OSError as e:
                raise UnsafePath(f"cannot create {real} ({e.strerror})") from e
            os.chmod(real, FILE_MODE)  # whatever the umask took away or left
        return real
    _check_own(real, info, FILE_MODE, make)
    return real


def _make_folder(part: Path) -> None:
    try:
        os.mkdir(part, FOLDER_MODE)
    except FileExistsError:
        return  # made meanwhile by someone: the checks that follow judge it
    except OSError as e:
        raise UnsafePath(
            f"cannot make folder {part} ({e.strerror}); make it yourself (mode 700) or "
            "choose another folder"
        ) from e
    os.chmod(part, FOLDER_MODE)  # the umask may have left less (or, if odd, more) than 0700


def _check_above(part: Path, info: os.stat_result) -> None:
    """A folder above ours: others must not be able to rename what it holds."""
    if stat.S_ISLNK(info.st_mode):  # resolved already: only a link made since lands here
        raise UnsafePath(f"{part} became a symbolic link while it was checked; try again")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{part} is not a folder; choose another place")
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise UnsafePath(
            f"folder {part} belongs to uid {info.st_uid}, not to this user (uid {me}) or root; "
            "nothing is kept under it: choose another folder"
        )
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        raise UnsafePath(
            f"folder {part} can be changed by other users (mode {_mode(info)}); "
            f"run: chmod go-w {part}"
        )


def _check_own(part: Path, info: os.stat_result, mode: int, narrow: bool) -> None:
    """The folder or file itself: ours, changed by nobody else; read by nobody else after."""
    kind = "folder" if mode == FOLDER_MODE else "file"
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{part} is a symbolic link; remove it (a {kind} is kept there)")
    if not (stat.S_ISDIR if kind == "folder" else stat.S_ISREG)(info.st_mode):
        raise UnsafePath(f"{part} is not a {kind}; remove it or choose another place")
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafePath(
            f"{kind} {part} belongs to uid {info.st_uid}, not to this user (uid {me}), so "
            "nothing in it is used; remove it or choose another place"
        )
    if info.st_mode & 0o022:
        raise UnsafePath(
            f"{kind} {part} can be changed by other users (mode {_mode(info)}), so nothing in "
            f"it is used; check it holds only your files, then run: chmod {mode:o} {part}"
        )
    if narrow and stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(part, mode)  # ours and unchanged by others: made by an older version


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):o}"
