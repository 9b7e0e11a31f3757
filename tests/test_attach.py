"""The consoles of server mode in a real terminal (a private tmux server): an attached console
that hangs up leaves the engine and its children alone; a foreground console that dies
(hang-up or SIGKILL) takes its own engine down gracefully, with nothing left; a read-only
console refuses to act, saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator

import pytest
from helpers import is_alive, tree, wait_gone
from needs import needs
from servermode import Site, code, described, engine_up, py, running, wait_until
from test_own_death import Terminal

pytestmark = needs("tmux", lambda: None if shutil.which("tmux") else "not on PATH (a real pty)")


@pytest.fixture(scope="module")
def shared() -> Iterator[Site]:
    with engine_up({"chatty": py("chatty", "20"), "grouped": py("spawns_grandchild")}) as site:
        yield site


@pytest.mark.parametrize("death", ["SIGHUP", "terminal closed"])
def test_a_hang_up_of_an_attached_console_leaves_the_engine_running(
    shared: Site, death: str
) -> None:
    before = running(shared)
    engine = shared.engine_pid()
    terminal = Terminal(shared.argv("attach"), shared.project, shared.env)
    try:
        terminal.wait_for(r"out \d+")  # the panes are up and chatty's output streams in
        if death == "SIGHUP":
            os.kill(terminal.pid, signal.SIGHUP)
        else:
            terminal.close()  # the pty's master closes: the kernel hangs the terminal up
        assert wait_gone([terminal.pid], timeout=10) == []
    finally:
        terminal.close()
    assert shared.engine_pid() == engine
    assert running(shared) == before


def test_a_read_only_console_refuses_to_restart_and_detaches_with_q(shared: Site) -> None:
    before = running(shared)
    terminal = Terminal(shared.argv("attach", "--read-only"), shared.project, shared.env)
    try:
        terminal.wait_for(r"out \d+")
        terminal.tmux("send-keys", "r")
        terminal.wait_for(r"read-only console: restart \w+ refused")
        terminal.tmux("send-keys", "q")
        assert wait_gone([terminal.pid], timeout=10) == [], terminal.screen()
    finally:
        terminal.close()
    assert running(shared) == before


POLITE = code("""
    import os, signal, sys, time
    def bye(*_):
        open(os.environ["POLITE_MARKER"], "w").write("stopped")
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    print("waiting", flush=True)
    while True:
        time.sleep(3600)
""")


@pytest.mark.parametrize("death", ["SIGHUP", "SIGKILL"])
def test_a_foreground_console_that_dies_stops_its_engine_gracefully(death: str) -> None:
    """The console's engine runs in a session of its own, so no terminal signal reaches it:
    it stops everything because its owner's socket closed, each child by its stop signal."""
    site = Site({"polite": POLITE, "grouped": py("spawns_grandchild"), "chatty": py("chatty")})
    marker = site.root / "polite-stopped"
    site.env["POLITE_MARKER"] = str(marker)
    terminal = Terminal(site.argv(""), site.project, site.env)
    try:
        terminal.wait_for("waiting")
        # console, engine, watchdog, polite, grouped and its grandchild, chatty
        wait_until(lambda: len(tree(terminal.pid)) >= 7, what="the whole family")
        family = tree(terminal.pid)
        engine = site.engine_pid()
        assert engine in family and site.place.socket.exists()
        os.kill(terminal.pid, signal.Signals[death])
        assert wait_gone(family, timeout=30) == [], described(family)
        assert marker.read_text() == "stopped", "polite was killed, not stopped"
        assert not is_alive(engine)
        assert not site.place.socket.exists()  # the engine removed it as it left
    finally:
        terminal.close()
        site.close()
