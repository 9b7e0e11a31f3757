"""Is a web server answering? One ``GET`` request with a deadline; any HTTP answer counts.

A 404, a 500 or a redirect all prove the server accepts and answers requests, which is what
"ready" means here; only a refused or silent socket does not. Whose server answered is the
caller's question (``backends.ports``): ``answers`` says at which address.

The probe is not traffic. Only the status line is read: the connection is closed right after
it, whatever body follows. ``GET`` rather than ``HEAD``: a Django view writes its body for
HEAD too, and gunicorn warns about every such response ("WSGI app sent body bytes on a no-body
response"), a log line per probe. The request says who sent it (``USER_AGENT``), and its
access-log line is left out of the request counts by its request line (``request_line``):
method, path and version are in every server's access log, whereas the user agent is only in
gunicorn's and the query string is not in granian's.
"""

from __future__ import annotations

import asyncio
import re
import socket
from urllib.parse import urlsplit

from tui import version

USER_AGENT = f"prodserver-tui-probe/{version().split()[0]}"


def probe_address(url: str) -> tuple[str, int] | None:
    """Where to knock: a server bound to every interface is reached on loopback."""
    parts = urlsplit(url)
    try:
        port = parts.port  # a server's own bind option may hold any port: 99999, "http"
    except ValueError:
        return None
    if parts.scheme != "http" or not port:
        return None
    host = parts.hostname or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return host, port


def request_line(path: str) -> str:
    """A regex for the probe's request as access logs quote it (``"GET /healthz HTTP/1.0"``),
    with or without its query string and minor version (granian logs ``"GET /healthz
    HTTP/1"``). HTTP/1.0, as the probe asks: elsewhere than in granian's log a browser's GET
    of the same path (HTTP/1.1 or later) is traffic."""
    bare = path.split("?", 1)[0]
    return rf'"GET {re.escape(bare)}(?:\?\S*)? HTTP/1(?:\.0)?"'


async def answers(
    host: str, port: int, path: str, timeout: float, host_header: str | None = None
) -> tuple[str, int] | None:
    """One request, answered within ``timeout`` or abandoned (closed): the address (IP, port)
    that answered, None if none did. ``host_header`` names a host the site allows when the
    probed address is not one of them."""
    loop = asyncio.get_running_loop()
    name = host_header or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    request = f"GET {path} HTTP/1.0\r\nHost: {name}\r\nUser-Agent: {USER_AGENT}\r\n\r\n"
    try:
        async with asyncio.timeout(timeout):
            with await _connect(host, port) as sock:
                await loop.sock_sendall(sock, request.encode())
                status = await _status_line(sock)
                peer = sock.getpeername()
    except (OSError, TimeoutError):
        return None
    if not status.startswith(b"HTTP/"):
        return None
    return str(peer[0]), int(peer[1])


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking socket to the first address of ``host`` that accepts."""
    loop = asyncio.get_running_loop()
    error = OSError(f"{host} has no address")
    for family, kind, proto, _, address in await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as e:
            sock.close()
            error = e
            continue
        except BaseException:  # the deadline: never leak the socket
            sock.close()
            raise
        return sock
    raise error


async def _status_line(sock: socket.socket) -> bytes:
    """Up to the end of the status line, read in small pieces: a stream reader would take the
    whole body that has arrived (a 35 KB homepage, every probe). Closing drops the rest."""
    loop = asyncio.get_running_loop()
    line = b""
    while b"\n" not in line and len(line) < STATUS_MAX:
        piece = await loop.sock_recv(sock, STATUS_PIECE)
        if not piece:
            break
        line += piece
    return line


STATUS_PIECE = 64  # "HTTP/1.1 503 Service Unavailable\r\n" is 34
STATUS_MAX = 1024  # no status line is longer: whatever sends more is no HTTP server
