"""Is a web server answering? One ``HEAD`` request with a deadline; any HTTP answer counts.

A 404, a 500 or a redirect all prove the server accepts and answers requests, which is what
"ready" means here; only a refused or silent socket does not.

The probe is not traffic. ``HEAD`` asks for no body (a homepage is rendered but not sent), only
the status line is read, and the request says who sent it (``USER_AGENT``). Its access-log line
is left out of the request counts by its request line (``request_line``): method and path are
in every server's access log, whereas the user agent is only in gunicorn's and the query string
is not in granian's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlsplit

try:
    USER_AGENT = f"prodserver-tui-probe/{version('prodserver-tui')}"
except PackageNotFoundError:  # run from a checkout without installing
    USER_AGENT = "prodserver-tui-probe/0"


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
    """A regex for the probe's request as access logs quote it (``"HEAD /healthz HTTP/1.0"``),
    with or without its query string (granian logs the path alone)."""
    bare = path.split("?", 1)[0]
    return rf'"HEAD {re.escape(bare)}(?:\?\S*)? HTTP/\d(?:\.\d)?"'


async def answers(
    host: str, port: int, path: str, timeout: float, host_header: str | None = None
) -> bool:
    """One request, answered within ``timeout`` or abandoned (closed). ``host_header`` names
    a host the site allows when the probed address is not one of them."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                name = host_header or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
                writer.write(
                    f"HEAD {path} HTTP/1.0\r\nHost: {name}\r\n"
                    f"User-Agent: {USER_AGENT}\r\n\r\n".encode()
                )
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/")
