"""A fake OpenAI-compatible server that answers 200 and then trickles: one byte every few
seconds, never finishing. An HTTP client's read timeout restarts at every byte, so only a
wall-clock deadline ends a call to it.

Run in its own process (``python tests/trickle_server.py INTERVAL``; it prints its port),
so that its sockets and its one asyncio thread are not counted by tests that count threads.
``trickle_server()`` starts and stops one; ``TrickleServer.stats()`` reads its counters.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

COUNTS = {"requests": 0, "open": 0, "bytes_trickled": 0}


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float
) -> None:
    COUNTS["open"] += 1
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await reader.readexactly(length)
        if head.startswith(b"GET /stats"):
            body = json.dumps(COUNTS).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
            return
        COUNTS["requests"] += 1
        # Headers at once, then a body that would be valid JSON if it ever ended.
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        await writer.drain()
        while True:
            await asyncio.sleep(interval)
            writer.write(b" ")
            await writer.drain()
            COUNTS["bytes_trickled"] += 1
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return
    finally:
        COUNTS["open"] -= 1
        writer.close()


async def _serve(interval: float) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, interval), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class TrickleServer:
    url: str  # the OpenAI base URL, ending in /v1
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, int]:
        root = self.url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{root}/stats", timeout=10) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data


@contextmanager
def trickle_server(interval_s: float = 2.0) -> Iterator[TrickleServer]:
    """A trickling server in a child process; yields its base URL and counters."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(interval_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield TrickleServer(f"http://127.0.0.1:{port}/v1", proc)
    finally:
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(_serve(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0))
