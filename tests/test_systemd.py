"""systemd: sd_notify datagrams to a real socket, and the unit file read by systemd itself.

The unit is checked twice by systemd's own parser: ``systemd-analyze verify`` (syntax, that
the program exists and is executable, an absolute working directory) and ``systemd --test``
(a manager that loads the unit and dumps what it understood, without starting anything),
which shows every argument, variable and path exactly as systemd will use them. Neither needs
systemd to be PID 1, so both run in a container too.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.needs import needs, require
from tui.engine import systemd
from tui.engine.systemd import UnitError, notify, program, status, stop_timeout, unit

# -- notify ---------------------------------------------------------------------------------


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        yield sock


def test_notify_sends_one_datagram_to_a_path(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
    assert notify("READY=1")
    assert listener.recv(4096) == b"READY=1"
    assert status(["running", "running", "backoff", "running"])
    assert listener.recv(4096) == b"STATUS=3 running, 1 backoff"


def test_notify_reaches_the_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"prodserver-tui-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.stopping()
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_outside_systemd_is_a_quiet_no(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.ready()
    assert caplog.records == []


@pytest.mark.parametrize("where", ["{tmp}/nobody-listens", "@prodserver-tui-nobody", "vsock:2:9"])
def test_an_unreachable_socket_is_one_logged_line(
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(systemd, "_told", set())
    monkeypatch.setenv("NOTIFY_SOCKET", where.format(tmp=tmp_path))
    with caplog.at_level(logging.WARNING):
        assert not notify("READY=1")
        assert not notify("READY=1")
    assert len(caplog.records) == 1, caplog.records
    assert "NOTIFY_SOCKET" in caplog.records[0].getMessage()


def test_a_full_socket_never_blocks_the_engine(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """systemd not reading (hung, or busy): a blocking send would stall the engine's loop."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        with pytest.raises(BlockingIOError):  # fill the listener's queue, never read it
            for _ in range(100_000):
                filler.sendto(b"x" * 1024, listener.getsockname())
        monkeypatch.setattr(systemd, "_told", set())
        monkeypatch.setenv("NOTIFY_SOCKET", listener.getsockname())
        assert not notify("STATUS=4 running")  # pytest-timeout fails it if this blocks
    assert "cannot tell systemd STATUS" in caplog.text


# -- the unit -------------------------------------------------------------------------------

# Every character systemd reads specially in a value: quotes, backslash, specifier, variable.
HOSTILE = """my site %h $HOME ${X} "dq" 'sq' back\\slash ; é"""


def _no_analyze() -> str | None:
    return None if shutil.which("systemd-analyze") else "systemd-analyze is not installed"


def _manager() -> str | None:
    for path in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd"):
        if os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture
def world() -> Iterator[Path]:
    """A world-readable folder: ``systemd --test`` refuses root and runs as nobody there."""
    root = Path(tempfile.mkdtemp(prefix="prodserver-tui-unit-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _project(root: Path) -> tuple[Path, Path]:
    """A project folder named with every hostile character, and a real executable with all
    but the quotes and backslash, which systemd refuses in a program path."""
    folder = root / HOSTILE
    folder.mkdir(mode=0o755)
    bin = root / "bin %h $HOME ${X} ; é"
    bin.mkdir(mode=0o755)
    exe = bin / "prodserver-tui"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return folder, exe


def _unit(folder: Path, exe: Path, user: str | None = None) -> tuple[str, list[str], dict]:
    argv = [str(exe), "--headless", "--settings", "my%site.$settings", "--pythonpath", str(folder)]
    env = {"PATH": f"/usr/bin:{folder}", "ODD": HOSTILE}
    text = unit(
        name="mysite",
        description=f"prodserver-tui: my%site.$settings in {folder}",
        exec_start=argv,
        working_directory=folder,
        stop_timeout=stop_timeout([30.0, 35.5]),
        socket=folder / "control.sock",
        log_folder=folder / "logs",
        user=user,
        environment=env,
    )
    return text, argv, {"PRODSERVER_TUI_SOCKET": str(folder / "control.sock"), **env}


@needs("systemd-analyze", _no_analyze)
@pytest.mark.parametrize("mode", ["user", "system"])
def test_systemd_analyze_verifies_the_unit(mode: str, world: Path) -> None:
    """The program path is checked to exist: a path systemd unquoted wrongly is "not
    executable". Warnings (an ignored setting) leave the exit code 0, so stderr must be clean."""
    folder, exe = _project(world)
    user = pwd.getpwuid(os.getuid()).pw_name if mode == "system" else None
    text, _, _ = _unit(folder, exe, user)
    path = world / "mysite.service"
    path.write_text(text)
    runtime = world / "runtime"
    runtime.mkdir(mode=0o700)
    flags = ["--user"] if mode == "user" else []
    done = subprocess.run(
        ["systemd-analyze", *flags, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
    )
    ours = [line for line in done.stderr.splitlines() if "mysite" in line]
    assert (done.returncode, ours) == (0, []), done.stderr


@needs("systemd-analyze", _no_analyze)
def test_systemd_reads_every_value_back_exactly(world: Path) -> None:
    """``systemd --test`` dumps the unit as the manager holds it. ``$$`` stays doubled in the
    dump: systemd turns it into ``$`` when it starts the command (systemd.service(5))."""
    manager = _manager()
    require("systemd", None if manager else "no systemd binary in /lib/systemd or /usr/lib")
    assert manager is not None
    folder, exe = _project(world)
    text, argv, env = _unit(folder, exe)
    units = world / "units"
    units.mkdir(mode=0o755)
    (units / "mysite.service").write_text(text.replace("[Unit]", "[Unit]\nDefaultDependencies=no"))
    home = world / "home"
    home.mkdir(mode=0o700)
    run_as: list[str] = []
    if os.getuid() == 0:  # "Don't run test mode as root."
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        run_as = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
        run_as.append("--clear-groups")
    done = subprocess.run(
        [*run_as, manager, "--test", "--user", "--unit=mysite.service", "--no-pager"],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home),
            "SYSTEMD_UNIT_PATH": f"{units}:",
        },
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    dumped = done.stdout.split("-> Unit mysite.service:", 1)[1].split("-> Unit ", 1)[0]
    fields = [line.strip().split(": ", 1) for line in dumped.splitlines() if ": " in line]
    assert ["Description", f"prodserver-tui: my%site.$settings in {folder}"] in fields
    assert ["WorkingDirectory", str(folder)] in fields
    assert {k: v for k, v in (f[1].split("=", 1) for f in fields if f[0] == "Environment")} == env
    (command,) = [_words(f[1]) for f in fields if f[0] == "Command Line"]
    assert command == [argv[0], *(a.replace("$", "$$") for a in argv[1:])]
    assert ["KillMode", "mixed"] in fields
    assert ["TimeoutStopSec", "46s"] in fields
    assert ["NotifyAccess", "main"] in fields


def _words(line: str) -> list[str]:
    """The dump's command line: bare words, or double-quoted ones with a backslash before
    any character (systemd's shell_maybe_quote escapes \\ " $ and `)."""
    return [
        re.sub(r"\\(.)", r"\1", quoted) if quoted else bare
        for quoted, bare in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    ]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"working_directory": Path("/srv/my\nsite")}, "newline"),
        ({"exec_start": ["/usr/bin/prodserver-tui", "--settings", "a\nb"]}, "newline"),
        ({"environment": {"X": "a\rb"}}, "newline"),
        ({"description": "a\x1b[2Jb"}, "control character"),
        ({"socket": Path("/run/a\nb.sock")}, "newline"),
        ({"working_directory": Path("/srv/site ")}, "ends with a space"),
        ({"working_directory": Path("srv/site")}, "must be absolute"),
        ({"exec_start": ["prodserver-tui"]}, "absolute program path"),
        ({"exec_start": ["/srv/it's/bin/prodserver-tui"]}, "quote or backslash"),
        ({"environment": {"A B": "1"}}, "not a variable name"),
        ({"name": "my site"}, "unit name"),
        ({"user": "root\nExecStartPre=/bin/sh"}, "not a user name"),
    ],
)
def test_a_value_the_unit_cannot_hold_is_refused(change: dict, says: str) -> None:
    good = {
        "name": "mysite",
        "description": "mysite",
        "exec_start": ["/usr/bin/prodserver-tui", "--headless"],
        "working_directory": Path("/srv/mysite"),
        "stop_timeout": 40,
        "socket": Path("/run/user/1000/prodserver-tui/mysite.sock"),
        "log_folder": Path("/var/log/mysite"),
    }
    with pytest.raises(UnitError, match=says):
        unit(**{**good, **change})


def test_stop_timeout_is_the_longest_grace_plus_a_margin() -> None:
    """Every entry stops at once (``Supervisor.stop_all``), so the longest grace decides."""
    assert stop_timeout([10.0, 35.5, 30.0]) == 36 + systemd.STOP_MARGIN
    assert stop_timeout([]) == 10 + systemd.STOP_MARGIN


def test_program_runs_this_prodserver_tui() -> None:
    done = subprocess.run(
        [*program(), "--version"], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("prodserver-tui ")
