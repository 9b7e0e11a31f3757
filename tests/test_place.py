"""Where an engine lives: real paths, real folders, real Unix sockets, real flocks, and real
processes for a second engine, a racing engine and a client run as another user (``nobody``,
when the tests run as root)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import needs, require

from tui.engine import place as placemod
from tui.engine.place import (
    AlreadyRunning,
    NotRunning,
    Place,
    PlaceError,
    allowed,
    connect,
    engine_pid,
    listen,
    peer_pid,
    peer_uid,
    place_for,
)

NOBODY = 65534
as_root = needs("root", lambda: None if os.geteuid() == 0 else "acting as another user needs root")

# A second engine: takes the place, says so, holds it until its stdin closes.
ENGINE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tui.engine.place import AlreadyRunning, listen, place_for
    place = place_for(Path(sys.argv[1]), "mysite.settings")
    sys.stdin.readline() if sys.argv[2] == "wait-go" else None
    try:
        listener = listen(place)
    except AlreadyRunning as e:
        print("already", e.pid, flush=True)
        sys.exit(0)
    print("won", flush=True)
    sys.stdin.read()
    listener.close()
    """
)


@pytest.fixture
def homes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every folder the place derives from, in a fresh folder with a short path (pytest's
    tmp_path can be too long for a socket path under it)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="place-", dir="/tmp"))
    for name in ("run", "state", "home", "project"):
        (tmp_path / name).mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(placemod.ENV_SOCKET, raising=False)
    yield tmp_path
    shutil.rmtree(tmp_path)


@pytest.fixture
def place(homes: Path) -> Place:
    return place_for(homes / "project", "mysite.settings")


def engine(project: Path, *, wait_go: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(project), "wait-go" if wait_go else "now"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def engines() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.stdin and not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=10)


def test_paths_are_stable_readable_and_distinct(homes: Path) -> None:
    other = homes / "other"
    one = place_for(homes / "project", "mysite.settings")
    assert one == place_for(Path(os.path.relpath(homes / "project")), "mysite.settings")
    assert one.key.startswith("project-mysite.settings-") and len(one.key.rsplit("-")[-1]) == 8
    assert one.socket == homes / "run" / "prodserver-tui" / f"{one.key}.sock"
    assert one.state == homes / "state" / "prodserver-tui" / one.key
    keys = {
        one.key,
        place_for(other, "mysite.settings").key,
        place_for(homes / "project", "mysite.settings_prod").key,
    }
    assert len(keys) == 3
    # Same folder name elsewhere, same settings: still two engines.
    (homes / "elsewhere" / "project").mkdir(parents=True)
    assert place_for(homes / "elsewhere" / "project", "mysite.settings").key != one.key


def test_without_runtime_dir_the_socket_is_under_home(
    homes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.delenv("XDG_STATE_HOME")
    there = place_for(homes / "project", "mysite.settings")
    state = homes / "home" / ".local" / "state" / "prodserver-tui"
    assert there.socket == state / "run" / f"{there.key}.sock"
    assert there.state == state / there.key
    with listen(there):
        assert stat.S_IMODE(os.stat(state / "run").st_mode) == 0o700


def test_flag_beats_environment_beats_default(homes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(placemod.ENV_SOCKET, str(homes / "env.sock"))
    assert place_for(homes / "project", "s").socket == homes / "env.sock"
    flag = place_for(homes / "project", "s", socket=str(homes / "flag.sock"))
    assert flag.socket == homes / "flag.sock"
    with listen(flag), connect(flag) as client:
        assert peer_uid(client) == os.geteuid()


@pytest.mark.parametrize("how", ["flag", "runtime dir"])
def test_a_socket_path_too_long_says_how_to_choose_another(
    homes: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    deep = homes / ("d" * 100)
    flag = str(deep / "e.sock") if how == "flag" else None
    if how == "runtime dir":
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    with pytest.raises(PlaceError) as caught:
        place_for(homes / "project", "mysite.settings", socket=flag)
    message = str(caught.value)
    assert str(deep) in message and "--socket" in message and placemod.ENV_SOCKET in message
    assert "\n" not in message


def test_listen_binds_0600_in_a_0700_folder_and_close_removes_it(place: Place) -> None:
    with listen(place) as listener:
        assert not listener.replaced_stale
        assert stat.S_IMODE(os.lstat(place.socket).st_mode) == 0o600
        assert stat.S_ISSOCK(os.lstat(place.socket).st_mode)
        assert stat.S_IMODE(os.stat(place.socket.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(place.state).st_mode) == 0o700
        with connect(place) as client:
            server_side, _ = listener.socket.accept()
            with server_side:
                assert peer_uid(server_side) == os.geteuid() and allowed(os.geteuid())
                assert peer_pid(server_side) == os.getpid() == peer_pid(client)
        assert engine_pid(place) == os.getpid()
    assert not place.socket.exists()
    assert engine_pid(place) is None  # the lock file stays, but nobody holds it


@pytest.mark.parametrize("mode", [0o757, 0o775])
def test_a_folder_others_can_change_is_refused(place: Place, mode: int) -> None:
    folder = place.socket.parent
    folder.mkdir(mode=mode)
    folder.chmod(mode)
    with pytest.raises(PlaceError, match=f"{folder} can be changed by other users"):
        listen(place)
    assert list(folder.iterdir()) == []
    assert stat.S_IMODE(os.stat(folder).st_mode) == mode  # refused, not repaired


def test_our_own_readable_folder_is_narrowed_to_0700(place: Place) -> None:
    """backends.private's rule: a 0755 folder of ours (an older version made it) is narrowed."""
    place.socket.parent.mkdir(mode=0o755)
    place.socket.parent.chmod(0o755)
    with listen(place):
        assert stat.S_IMODE(os.stat(place.socket.parent).st_mode) == 0o700


@as_root
@pytest.mark.parametrize("which", ["socket", "state"])
def test_a_folder_of_another_user_is_refused(place: Place, which: str) -> None:
    folder = place.socket.parent if which == "socket" else place.state
    folder.mkdir(mode=0o700, parents=True)
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(PlaceError, match=f"{folder} belongs to uid {NOBODY}"):
        listen(place)
    assert not place.socket.exists()


def test_a_stale_socket_is_replaced(place: Place) -> None:
    place.socket.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(place.socket))  # bound, never listening, closed: what a killed engine leaves
    dead.close()
    with pytest.raises(NotRunning) as caught:
        connect(place)
    assert str(caught.value) == (
        f"no engine is running for {place.project} (socket {place.socket}): "
        "start one with `prodserver-tui up`"
    )
    with listen(place) as listener:
        assert listener.replaced_stale
        with connect(place):
            pass


def test_connect_with_no_socket_is_not_running(place: Place) -> None:
    with pytest.raises(NotRunning, match="start one with `prodserver-tui up`"):
        connect(place)


def test_a_live_engine_is_already_running_with_its_pid(
    place: Place, homes: Path, engines: list[subprocess.Popen[str]]
) -> None:
    proc = engine(homes / "project")
    engines.append(proc)
    assert proc.stdout and proc.stdout.readline() == "won\n"
    inode = os.lstat(place.socket).st_ino
    with pytest.raises(AlreadyRunning) as caught:
        listen(place)
    assert caught.value.pid == proc.pid == engine_pid(place)
    assert str(caught.value) == f"already running (pid {proc.pid}, socket {place.socket})"
    assert os.lstat(place.socket).st_ino == inode  # untouched, still answering
    with connect(place) as client:
        assert peer_pid(client) == proc.pid


def test_the_lock_alone_keeps_a_second_engine_out(
    place: Place, homes: Path, engines: list[subprocess.Popen[str]]
) -> None:
    """An engine whose socket is gone (removed by hand, or not bound yet) still holds the lock:
    no second engine starts, and the pid comes from the lock file."""
    proc = engine(homes / "project")
    engines.append(proc)
    assert proc.stdout and proc.stdout.readline() == "won\n"
    place.socket.unlink()
    with pytest.raises(AlreadyRunning) as caught:
        listen(place)
    assert caught.value.pid == proc.pid == engine_pid(place)
    assert not place.socket.exists()


def test_two_engines_starting_at_once_one_wins(
    place: Place, homes: Path, engines: list[subprocess.Popen[str]]
) -> None:
    """End to end. Without the lock the socket checks alone lose this race only rarely (once
    in about 100 rounds of 4 here: a bind between another's check and bind), too rarely to
    catch in a few rounds; the test above shows the lock itself deterministically."""
    for _ in range(5):
        procs = [engine(homes / "project", wait_go=True) for _ in range(3)]
        engines.extend(procs)
        for proc in procs:
            assert proc.stdin
            proc.stdin.write("go\n")
        for proc in procs:
            assert proc.stdin
            proc.stdin.flush()
        answers = [proc.stdout.readline().split() for proc in procs if proc.stdout]
        winners = [proc for proc, answer in zip(procs, answers, strict=True) if answer == ["won"]]
        assert len(winners) == 1, answers
        assert all(a[:1] == ["already"] for a in answers if a != ["won"]), answers
        with connect(place) as client:
            assert peer_pid(client) == winners[0].pid
        for proc in procs:
            assert proc.stdin
            proc.stdin.close()
            proc.wait(timeout=10)
        assert not place.socket.exists()


def test_a_file_at_the_socket_path_is_refused_and_left_alone(place: Place) -> None:
    place.socket.parent.mkdir(mode=0o700)
    place.socket.write_text("precious")
    with pytest.raises(PlaceError, match="exists and is not a socket, so it is left alone"):
        listen(place)
    assert place.socket.read_text() == "precious"
    with listen(place_for(place.project, "mysite.settings", socket=str(place.socket) + "2")):
        pass  # and the lock was released on the way out: another path works


@as_root
def test_a_stale_socket_of_another_user_is_left_alone(place: Place) -> None:
    place.socket.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(place.socket))
    dead.close()
    os.chown(place.socket, NOBODY, NOBODY)
    with pytest.raises(PlaceError, match=f"belongs to uid {NOBODY}"):
        listen(place)
    assert os.lstat(place.socket).st_uid == NOBODY


def test_close_leaves_a_socket_that_is_no_longer_ours(place: Place) -> None:
    listener = listen(place)
    place.socket.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(place.socket))
    try:
        listener.close()
        assert stat.S_ISSOCK(os.lstat(place.socket).st_mode)
    finally:
        other.close()


@as_root
def test_a_client_of_another_user_is_told_apart() -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    require("a system python3", None if python else "none in /usr/bin or /bin that nobody can run")
    assert python is not None
    folder = Path(tempfile.mkdtemp(prefix="place-nobody-", dir="/tmp"))
    try:
        folder.chmod(0o711)  # test only: nobody may traverse, not list
        path = folder / "s"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        path.chmod(0o666)
        server.listen(1)
        server.settimeout(10)
        client = subprocess.Popen(
            [python, "-I", "-c", CLIENT, str(path)], user=NOBODY, stdout=subprocess.PIPE
        )
        conn, _ = server.accept()
        with conn:
            assert peer_uid(conn) == NOBODY and peer_pid(conn) == client.pid
            assert not allowed(peer_uid(conn))
            conn.sendall(b"bye\n")
        assert client.communicate(timeout=10)[0] == b"bye\n"
        assert allowed(os.geteuid()) and allowed(0)
        server.close()
    finally:
        shutil.rmtree(folder)


CLIENT = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    sys.stdout.buffer.write(s.recv(16))
    """
)


def test_a_chosen_socket_folder_is_checked_but_never_narrowed(homes: Path) -> None:
    mine = homes / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    with listen(place_for(homes / "project", "s", socket=str(mine / "e.sock"))):
        assert stat.S_IMODE(os.stat(mine).st_mode) == 0o755
    shared = homes / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky, but the socket would sit in a folder not ours
    with pytest.raises(PlaceError, match=f"{shared} can be changed by other users"):
        listen(place_for(homes / "project", "s", socket=str(shared / "e.sock")))
    assert list(shared.iterdir()) == []


def test_a_killed_engine_leaves_a_socket_that_is_replaced(
    place: Place, homes: Path, engines: list[subprocess.Popen[str]]
) -> None:
    proc = engine(homes / "project")
    engines.append(proc)
    assert proc.stdout and proc.stdout.readline() == "won\n"
    proc.kill()
    proc.wait(timeout=10)
    assert stat.S_ISSOCK(os.lstat(place.socket).st_mode)  # left behind
    assert engine_pid(place) is None  # the lock died with it; its pid is not trusted
    with pytest.raises(NotRunning):
        connect(place)
    with listen(place) as listener:
        assert listener.replaced_stale
        with connect(place) as client:
            assert peer_pid(client) == os.getpid()
