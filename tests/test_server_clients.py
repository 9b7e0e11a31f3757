"""The control socket under many clients and bad ones: twenty that come and go, five at
once, one SIGKILLed mid-stream, one that never reads while a child floods, one of another
uid, a read-only one, and every kind of broken frame. Raw protocol clients on real sockets
(what any script would write), against engines started by ``prodserver-tui up``.

The checks on the shared engine record the pids of its children first and compare after: a
restart anywhere would change them; and a subscriber that stays throughout must see every
sequence number, without a gap or a skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from needs import needs
from servermode import REPO, SETTINGS, Raw, Site, code, gaps, py, running, shared_site, wait_until

from tui.engine import wire


@pytest.fixture(scope="module")
def shared() -> Iterator[Site]:
    with shared_site() as site:
        yield site


# -- many clients ------------------------------------------------------------------------------


def test_twenty_attaches_and_detaches_restart_nothing_and_lose_no_line(shared: Site) -> None:
    """One subscriber stays while twenty others come and go (half say detach, half just
    close mid-stream): its sequence numbers run on without a gap, and no child restarted."""
    before = running(shared)
    with Raw(shared.place) as stayer:
        stayer.call("subscribe", tail=0)
        stayer.follow()
        for i in range(20):
            with Raw(shared.place) as visitor:
                visitor.call("subscribe", tail=5)
                visitor.pump(lambda: len(visitor.seqs.get("chatty", [])) >= 10, what="lines")
                if i % 2 == 0:
                    assert visitor.call("detach")["ok"]
            assert gaps(visitor.seqs["chatty"]) == []
        mark = stayer.last("chatty")
        wait_until(lambda: stayer.last("chatty") > mark + 20, what="lines after the visits")
    assert running(shared) == before
    assert len(stayer.seqs["chatty"]) > 100
    assert gaps(stayer.seqs["chatty"]) == [] and stayer.skipped == []


def test_five_clients_at_once_each_get_every_line_in_order(shared: Site) -> None:
    """Five subscribers, then a restart of the counter: its 3000-line burst reaches each of
    them whole and in order, up to the same last line."""
    clients = [Raw(shared.place) for _ in range(5)]
    try:
        for client in clients:
            client.call("subscribe", tail=10)
            client.follow()
        with Raw(shared.place) as control:
            assert control.call("restart", names=["counter"])["ok"], "restart refused"
        wait_until(lambda: all("done" in burst(c) for c in clients), what="every burst's end")
    finally:
        for client in clients:
            client.close()
    lasts = {client.last("counter") for client in clients}
    assert len(lasts) == 1, lasts
    for client in clients:
        assert client.skipped == []
        assert gaps(client.seqs["counter"]) == []
        assert burst(client) == [f"n {i}" for i in range(3000)] + ["done"]


def burst(client: Raw) -> list[str]:
    """The counter's lines since it restarted (its first line), as this client got them."""
    texts = client.texts.get("counter", [])
    return texts[texts.index("n 0") :] if "n 0" in texts else []


def unix_sockets(pid: int) -> int:
    return len(psutil.Process(pid).net_connections(kind="unix"))


def test_a_client_killed_mid_stream_affects_nothing(shared: Site) -> None:
    """A real client process asks for all history, reads it slowly, and is SIGKILLed: the
    engine drops its connection and goes on; another subscriber misses nothing."""
    before = running(shared)
    engine = shared.engine_pid()
    assert engine is not None
    script = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.connect(sys.argv[1])\n"
        's.sendall(b\'{"id":1,"op":"hello","v":1}\\n{"id":2,"op":"subscribe"}\\n\')\n'
        "got = b''\n"
        'while b\'"ev":"lines"\' not in got:\n'
        "    got += s.recv(65536)\n"
        "print('reading', flush=True)\n"
        "while True:\n"
        "    s.recv(100)\n"
        "    time.sleep(0.01)\n"
    )
    with Raw(shared.place) as stayer:
        stayer.call("subscribe", tail=0)
        stayer.follow()
        baseline = unix_sockets(engine)
        client = subprocess.Popen(
            [psutil.Process().exe(), "-c", script, str(shared.place.socket)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None and client.stdout.readline() == "reading\n"
            wait_until(lambda: unix_sockets(engine) > baseline, what="its connection")
            client.kill()
        finally:
            client.kill()
            client.wait()
        wait_until(lambda: unix_sockets(engine) == baseline, what="the engine to drop it")
        mark = stayer.last("chatty")
        wait_until(lambda: stayer.last("chatty") > mark + 20, what="lines after the kill")
    assert shared.engine_pid() == engine
    assert running(shared) == before
    assert gaps(stayer.seqs["chatty"]) == [] and stayer.skipped == []


# About 10 MB/s of 1 KB lines until the file named by FLOOD_STOP exists, then "flood over".
FLOOD = code("""
    import os, sys, time
    pad = "x" * 1000
    n = 0
    while not os.path.exists(os.environ["FLOOD_STOP"]):
        sys.stdout.write("".join(f"{n + i:010d} {pad}\\n" for i in range(100)))
        sys.stdout.flush()
        n += 100
        time.sleep(0.01)
    print("flood over", flush=True)
    time.sleep(10**6)
""")
STALLED_LINES = 50_000  # 1 KB lines that pass while a client reads nothing: 50 MB
# The engine keeps per client one cursor per entry and what its socket buffers hold
# (server: HIGH_WATER 256 KB plus one frame of at most ring-lines x 1 KB = 1 MB here), and
# the ring itself is bounded (1000 lines). 20 MB leaves room for the allocator's slack and
# still is well under the 50 MB that a queue per client would have to hold by then.
RSS_GROWTH_BOUND = 20 * 1024 * 1024


def test_a_client_that_never_reads_costs_bounded_memory_and_then_skips_once() -> None:
    site = Site({"flood": FLOOD})
    stop = site.root / "stop-flooding"
    site.env["FLOOD_STOP"] = str(stop)
    try:
        done = site.up("--ring-lines", "1000")
        assert done.returncode == 0, done.stdout + done.stderr
        engine = psutil.Process(site.engine_pid())
        with Raw(site.place) as reader, Raw(site.place) as stalled:
            reader.call("subscribe", tail=0)
            reader.follow()
            wait_until(lambda: reader.last("flood") > 20_000, what="the flood to be read")
            rss_before = engine.memory_info().rss
            stalled.call("subscribe", tail=0)
            at_stall = reader.last("flood")
            # The stalled client reads nothing meanwhile; the reader goes on receiving.
            wait_until(lambda: reader.last("flood") > at_stall + STALLED_LINES, 60, "50 MB")
            growth = engine.memory_info().rss - rss_before
            stop.touch()
            wait_until(lambda: "flood over" in reader.texts["flood"][-3:], what="flood over")
            stalled.pump(lambda: "flood over" in stalled.texts.get("flood", [])[-3:], 30)
        assert growth < RSS_GROWTH_BOUND, f"engine RSS grew by {growth / 2**20:.1f} MB"
        [skip] = stalled.skipped
        seqs = stalled.seqs["flood"]
        resumed = seqs.index(skip["to"])
        assert seqs[resumed - 1] == skip["from"] - 1  # what it had before, then the skip
        assert gaps(seqs[:resumed]) == [] and gaps(seqs[resumed:]) == []
        assert seqs[-1] == reader.last("flood")
    finally:
        site.close()


# -- another user ------------------------------------------------------------------------------

NOBODY = 65534
RAW_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror)
    raise SystemExit
try:
    s.sendall(b'{"id": 1, "op": "hello", "v": 1}\\n')
except BrokenPipeError:  # it answered and closed before we spoke: the answer is still there
    pass
data = b""
try:
    while chunk := s.recv(65536):
        data += chunk
except ConnectionResetError:  # it closed with our hello unread: the end, as EOF is
    pass
print(data.decode(), end="")
"""


def as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A real process as uid 65534, with the system Python (ours is under /root, 0700) and
    our packages on its path: the same Python version, so the same wheels."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        ["/usr/bin/python3", *argv],
        cwd=cwd,
        env=env,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs("root", lambda: None if os.geteuid() == 0 else "running a client as nobody needs root")
def test_a_client_of_another_uid_is_refused() -> None:
    site = Site({"chatty": py("chatty", "20")})
    folder = site.root / "sock"
    folder.mkdir(mode=0o711)
    os.chmod(site.root, 0o711)  # nobody may pass through to the socket, not list or change
    os.chmod(site.project, 0o755)
    path = str(folder / "e.sock")
    site.place = site.locate(path)
    try:
        assert site.up("--socket", path).returncode == 0
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        raw = as_nobody(["-c", RAW_CLIENT, path], site.project)
        assert raw.stdout == "connect: Permission denied\n", raw.stdout + raw.stderr
        status = ["-m", "tui.cli", "status", "--socket", path, "--settings", SETTINGS]
        cli = as_nobody(status, site.project)
        assert cli.returncode == 1
        assert cli.stderr == (
            f"prodserver-tui: socket {path} cannot be used by this user (uid {NOBODY}); "
            "run as the user who started the engine\n"
        )
        # Past the file mode, the engine's own check of the peer's credentials refuses.
        os.chmod(path, 0o666)
        raw = as_nobody(["-c", RAW_CLIENT, path], site.project)
        assert raw.stdout == (
            f'{{"ok":false,"error":"uid {NOBODY} may not control this engine"}}\n'
        )
        cli = as_nobody(status, site.project)
        assert cli.returncode == 1
        assert cli.stderr == (
            f"prodserver-tui: the engine refused this client: uid {NOBODY} may not control "
            "this engine\n"
        )
        assert running(site)["chatty"][0] is not None  # and it serves its own user
    finally:
        site.close()


def test_a_read_only_client_is_refused_every_action(shared: Site) -> None:
    before = running(shared)
    with Raw(shared.place, read_only=True) as raw:
        actions: list[tuple[str, dict[str, Any]]] = [
            ("restart", {"names": ["chatty"]}),
            ("stop", {"names": ["chatty"]}),
            ("scale", {"name": "chatty", "knob": "x", "value": 1}),
            ("stop_all", {}),
            ("kill_all", {}),
        ]
        for op, args in actions:
            answer = raw.call(op, **args)
            assert answer["ok"] is False and answer["error"] == f"read-only client: {op} refused"
        assert raw.call("view")["ok"]
    assert running(shared) == before


# -- protocol faults ---------------------------------------------------------------------------


def fault(
    shared: Site, data: bytes, hello: bool = False, half_close: bool = False
) -> list[dict[str, Any]]:
    """Send ``data`` on a fresh connection; every frame the engine answers until it closes."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(str(shared.place.socket))
    if hello:
        sock.sendall(wire.encode({"id": 1, "op": "hello", "v": wire.VERSION}))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it stopped reading
        sock.sendall(data)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    frames = []
    with sock, sock.makefile("rb") as file:
        while (frame := wire.read_sync(file)) is not None:
            frames.append(frame)
    return frames[1:] if hello else frames


def test_each_protocol_fault_gets_one_error_and_the_engine_serves_on(shared: Site) -> None:
    big = wire.MAX_FRAME + 10
    cases: list[tuple[bytes, bool, bool, str]] = [
        (b"not json\n", False, False, "bad frame: frame is not JSON (Expecting value at char"),
        (b"\xff\xfe\n", False, False, "bad frame: frame is not UTF-8 (byte 0xff at 0)"),
        (b"[1, 2]\n", True, False, "bad frame: frame is a JSON list, not an object"),
        (b'{"id": 1, "op": "view"}\n', False, False, "say hello first"),
        (b'{"id": 1, "op": "hello", "v": 99}\n', False, False, "protocol version 99 not"),
        (b"x" * big + b"\n", False, False, f"bad frame: frame longer than {wire.MAX_FRAME}"),
        (b'{"id": 1, "op": "hel', False, True, "the middle of a frame (20 bytes)"),
        (b'{"id": 1, "op": "hel', True, True, "the middle of a frame (20 bytes)"),
    ]
    before = running(shared)
    with Raw(shared.place) as stayer:
        stayer.call("subscribe", tail=0)
        stayer.follow()
        for data, hello, half_close, said in cases:
            [answer] = fault(shared, data, hello, half_close)
            assert answer["ok"] is False and said in answer["error"], (data[:40], answer)
        with Raw(shared.place) as other:  # a question it does not know is only refused
            answer = other.call("reboot")
            assert answer["ok"] is False
            assert answer["error"] == "unknown op 'reboot': this engine speaks protocol 1"
            assert other.call("view")["ok"]
        mark = stayer.last("chatty")
        wait_until(lambda: stayer.last("chatty") > mark + 20, what="lines after the faults")
    assert running(shared) == before
    assert gaps(stayer.seqs["chatty"]) == [] and stayer.skipped == []
