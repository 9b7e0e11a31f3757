"""Log files on a real disk: rotation, reading back, hostile names, permissions, a full disk,
a frozen disk, and the engine's lines reaching them from a real child process."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import fixture_argv
from helpers import command, until
from hypothesis import given
from hypothesis import strategies as st
from needs import require

from backends.private import UnsafePath
from tui.engine import logfiles
from tui.engine.child import State
from tui.engine.logfiles import SLOW_DISK, LogFiles, file_name, tail
from tui.engine.output import Line, Ring
from tui.engine.supervisor import Supervisor

Supervise = Callable[..., Awaitable[Supervisor]]
FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (out|err|sys) \| ")
NOT_WRITTEN = re.compile(r" sys \| (\d+) lines not written: (.*)$")


def batches(ring: Ring, stream: str, texts: list[str], per: int) -> Iterator[list[Line]]:
    """The lines as the supervisor hands them over: one ring append at a time."""
    for i in range(0, len(texts), per):
        first = ring.next_seq
        ring.append(stream, texts[i : i + per])
        yield ring.since(first)


def write_all(logs: LogFiles, name: str, texts: list[str], per: int = 7) -> None:
    for lines in batches(Ring(max_lines=per), "out", texts, per):
        logs.write(name, lines)


def on_disk(folder: Path, name: str) -> list[str]:
    """Every line of the entry's files, oldest first, read plainly (not through tail)."""
    base = folder / file_name(name)
    rotated = sorted(folder.glob(f"{base.name}.*"), key=lambda p: -int(p.suffix[1:]))
    return [line for p in [*rotated, base] if p.exists() for line in p.read_text().splitlines()]


@contextlib.contextmanager
def mounted(where: Path, *mount: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", *mount, str(where)], capture_output=True, text=True)
    require("mounting a file system (root)", done.stderr.strip() if done.returncode else None)
    try:
        yield where
    finally:  # lazily if need be: a failed test may have left a file open there
        if subprocess.run(["umount", str(where)]).returncode:
            subprocess.run(["umount", "--lazy", str(where)], check=True)


def test_rotation_keeps_files_under_the_limit_and_only_keep_of_them(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path / "logs", max_bytes=2048, keep=2)
    texts = [f"line {i:04d} " + "x" * 30 for i in range(400)]  # ~70 bytes a line: 20 files
    write_all(logs, "web", texts)
    logs.close()
    names = sorted(os.listdir(tmp_path / "logs"))
    assert names == ["web.log", "web.log.1", "web.log.2"]
    for name in names:
        data = (tmp_path / "logs" / name).read_bytes()
        assert 2048 - 80 < len(data) <= 2048 or name == "web.log", (name, len(data))
        assert data.endswith(b"\n")
    kept = on_disk(tmp_path / "logs", "web")
    assert all(FORMAT.match(line) for line in kept)
    # what is kept is the newest lines, none missing between the files
    assert [line.partition(" | ")[2] for line in kept] == texts[-len(kept) :]
    assert len(kept) > 2 * (2048 // 80)


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, max_bytes=1024, keep=0)
    write_all(logs, "web", [f"line {i}" for i in range(200)])
    logs.close()
    assert [p.name for p in tmp_path.iterdir()] == ["web.log"]
    assert on_disk(tmp_path, "web")[-1].endswith(" out | line 199")


def test_tail_reads_the_newest_lines_across_rotated_files(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, max_bytes=200_000, keep=5)
    # long lines among short ones, so lines straddle tail's 64 KiB blocks
    texts = [("y" * 15_000 if i % 50 == 7 else "") + f"n{i}" for i in range(3000)]
    write_all(logs, "web", texts, per=13)
    logs.close()
    assert (tmp_path / "web.log.3").exists()
    everything = on_disk(tmp_path, "web")
    for n in (1, 10, 999, len(everything) - 1):
        got = tail(tmp_path, "web", n)
        assert [x.text for x in got] == texts[-n:]
        assert all(x.stream == "out" and x.time is not None for x in got)
    assert [x.text for x in tail(tmp_path, "web", 10**9)] == texts[-len(everything) :]
    assert tail(tmp_path, "web", 0) == []
    assert tail(tmp_path, "nobody", 5) == []


def test_history_continues_across_an_engine_restart(tmp_path: Path) -> None:
    first = LogFiles(tmp_path, max_bytes=4096)
    write_all(first, "web", [f"before {i}" for i in range(100)])
    first.close()
    with open(tmp_path / "web.log", "ab") as f:  # a line the engine was killed writing
        f.write(b"2026-12-06T13:42:06.123+00:00 out | cut sh")
    again = LogFiles(tmp_path, max_bytes=4096)
    write_all(again, "web", [f"after {i}" for i in range(100)])
    again.close()
    got = [x.text for x in tail(tmp_path, "web", 201)]
    assert got == [f"before {i}" for i in range(100)] + ["cut sh"] + [
        f"after {i}" for i in range(100)
    ]


def test_streams_times_and_colours(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path)
    ring = Ring()
    for stream, text in [("out", "\x1b[1;31mred\x1b[0m plain"), ("err", "oops"), ("sys", "")]:
        logs.write("web", next(batches(ring, stream, [text], 1)))
    logs.close()
    lines = (tmp_path / "web.log").read_text().splitlines()
    assert [FORMAT.sub("", line) for line in lines] == ["red plain", "oops", ""]
    got = tail(tmp_path, "web", 3)
    assert [(x.stream, x.text) for x in got] == [("out", "red plain"), ("err", "oops"), ("sys", "")]
    assert [x.time for x in got] == pytest.approx([line.time for line in ring.since(0)], abs=1e-3)


def test_a_text_holding_a_newline_cannot_forge_a_line(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path)
    logs.write("web", [Line(0, "out", "a\n2026-01-01T00:00:00.000+00:00 sys | forged", 1.0)])
    logs.close()
    assert [(x.stream, x.text[:2]) for x in tail(tmp_path, "web", 5)] == [("out", "a ")]


HOSTILE = ["../x", "a/b", "/etc/passwd", "x\x00y", "..", ".", "", ".hidden", "%2F", "a%2Fb"]
HOSTILE += ["web", "web.log", "web.log.1", "é" * 64, "ÿ" * 200, "ÿ" * 199 + "z", "\u202eevil"]


def test_hostile_names_stay_in_the_folder_and_apart(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    logs = LogFiles(folder)
    for i, name in enumerate(HOSTILE):
        write_all(logs, name, [f"line of entry {i}"])
    logs.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    files = os.listdir(folder)
    assert len(files) == len(HOSTILE)
    assert not any(f.startswith(".") or len(f.encode()) > 255 for f in files)
    for i, name in enumerate(HOSTILE):
        assert [x.text for x in tail(folder, name, 5)] == [f"line of entry {i}"]


@given(st.text(), st.text())
def test_any_two_names_get_two_plain_file_names(one: str, other: str) -> None:
    for name in (one, other):
        made = file_name(name)
        assert "/" not in made and "\0" not in made and not made.startswith(".")
        assert len(made.encode()) <= 255 and made.endswith(".log")
    assert (file_name(one) == file_name(other)) == (one == other)


def test_folder_and_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        logs = LogFiles(tmp_path / "a" / "logs")
        write_all(logs, "web", ["x"])
        logs.close()
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "logs").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a" / "logs" / "web.log").stat().st_mode & 0o777 == 0o600


def test_a_folder_others_can_change_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir(mode=0o777)
    os.chmod(tmp_path / "logs", 0o777)
    with pytest.raises(UnsafePath, match="can be changed by other users"):
        LogFiles(tmp_path / "logs")


def test_a_file_that_is_a_symbolic_link_is_refused_once(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("")
    (folder / "web.log").symlink_to(target)
    logs = LogFiles(folder)
    write_all(logs, "web", ["secret"])
    write_all(logs, "api", ["fine"])
    write_all(logs, "web", ["secret again"])
    logs.close()
    assert target.read_text() == ""
    problems = logs.problems()
    assert list(problems) == ["web"]
    assert "is a symbolic link" in problems["web"]
    assert logs.problems() == {}
    assert [x.text for x in tail(folder, "api", 5)] == ["fine"]


def test_a_full_disk_is_reported_once_and_counted_when_it_has_room_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfiles, "RETRY_AFTER", 0.0)  # every batch tries the disk again
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=64k", "tmpfs") as disk:
        logs = LogFiles(disk / "logs")
        write_all(logs, "web", ["before"])
        wait(lambda: bool(tail(disk / "logs", "web", 1)), "the first line")
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
        os.close(fd)
        texts = [f"line {i} " + "z" * 60 for i in range(3000)]  # 200 KB: never fits
        write_all(logs, "web", texts)  # raises nothing: everything happens in the thread
        seen: list[dict[str, str]] = []

        def said() -> bool:
            seen.append(logs.problems())
            return any(seen)

        wait(said, "the full disk reported")
        write_all(logs, "web", texts[:100])
        filler.unlink()
        write_all(logs, "web", ["after"])
        logs.close()
        news = [p for p in [*seen, logs.problems()] if p]
        assert len(news) == 1 and list(news[0]) == ["web"], news
        assert "No space left on device" in news[0]["web"]
        lines = on_disk(disk / "logs", "web")
        assert lines[0].endswith(" out | before") and lines[-1].endswith(" out | after")
        lost = [NOT_WRITTEN.search(line) for line in lines]
        counted = [m for m in lost if m]
        assert len(counted) == 1 and "No space left on device" in counted[0][2]
        written = len(lines) - 3  # before, after, the count: a line cut short is written
        assert written + int(counted[0][1]) == len(texts) + 100


def wait(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """For the writer thread: these tests are synchronous, the engine's loop is not here."""
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A real ext4 file system in a file: it can be frozen, which tmpfs cannot."""
    tools = shutil.which("mkfs.ext4") and shutil.which("fsfreeze")
    require("mkfs.ext4 and fsfreeze", None if tools else "install util-linux and e2fsprogs")
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    with mounted(tmp_path / "disk", "-o", "loop", str(image)) as disk:
        yield disk


def test_a_frozen_disk_never_blocks_write_and_drops_are_counted(ext4: Path) -> None:
    logs = LogFiles(ext4 / "logs", queue_chars=20_000)
    write_all(logs, "web", ["first"])
    wait(lambda: bool(tail(ext4 / "logs", "web", 1)), "the first line")
    subprocess.run(["fsfreeze", "-f", str(ext4)], check=True)
    thawed = threading.Event()

    def thaw() -> None:
        if not thawed.is_set():
            thawed.set()
            subprocess.run(["fsfreeze", "-u", str(ext4)], check=True)

    safety = threading.Timer(60.0, thaw)  # a write() that blocks would hang here for ever
    safety.start()
    try:
        texts = [f"line {i} " + "w" * 40 for i in range(20_000)]  # 1 MB, 50 times the queue
        write_all(logs, "web", texts, per=10)
        frozen_throughout = not thawed.is_set()
    finally:
        safety.cancel()
        thaw()
    assert frozen_throughout, "write() waited for the frozen disk"
    logs.close(timeout=30.0)
    lines = on_disk(ext4 / "logs", "web")
    counted = [m for m in map(NOT_WRITTEN.search, lines) if m]
    assert counted and all(m[2] == SLOW_DISK for m in counted)
    dropped = sum(int(m[1]) for m in counted)
    written = [int(line.split(" | line ")[1].split()[0]) for line in lines if " | line " in line]
    assert dropped > len(texts) // 2
    assert len(written) + dropped == len(texts)
    assert written == sorted(set(written))  # in order, each once


async def test_the_engines_lines_land_in_the_file(supervise: Supervise, tmp_path: Path) -> None:
    logs = LogFiles(tmp_path / "logs")
    sup = await supervise(command("chatty", fixture_argv("chatty", "200")), logs=logs)
    child = sup["chatty"]
    await until(lambda: child.ring.next_seq > 60, what="60 lines")
    await until(lambda: child.state is State.RUNNING, what="running")
    assert await sup.stop_all()
    ring = [(x.stream, x.text) for x in child.ring.since(0)]
    on_file = [(x.stream, x.text) for x in tail(tmp_path / "logs", "chatty", 10_000)]
    assert on_file == ring
    assert ("err", "err 3") in on_file and on_file[-1] == ("sys", "-- stopped: killed by SIGTERM")
    logs.write("chatty", child.ring.since(0))  # after stop_all: ignored, and no error
    assert tail(tmp_path / "logs", "chatty", 10_000)[-1].text == "-- stopped: killed by SIGTERM"


async def test_a_file_problem_shows_once_in_the_entrys_pane(
    supervise: Supervise, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o700)
    (folder / "chatty.log").symlink_to(tmp_path / "elsewhere")
    sup = await supervise(command("chatty", fixture_argv("chatty", "200")), logs=LogFiles(folder))
    child = sup["chatty"]

    def notes() -> list[str]:
        return [x.text for x in child.ring.since(0) if "log file not written" in x.text]

    await until(lambda: notes(), what="the note")
    await until(lambda: child.ring.next_seq > 200, what="more lines after it")
    await sup.stop_all()
    assert len(notes()) == 1 and "is a symbolic link" in notes()[0], notes()
    assert not (tmp_path / "elsewhere").exists()
