"""Is a web server answering? One HTTP request with a deadline; any HTTP answer counts.

A 404, a 500 or a redirect all prove the server accepts and answers requests, which is what
"ready" means here; only a refused or silent socket does not.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


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


async def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                status = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    return status.startswith(b"HTTP/")
