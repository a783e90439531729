"""An open-loop HTTP/1.1 load generator light enough not to be the bottleneck.

httpx opening a connection per request costs the sender ~5 ms of CPU each, which on a
2-CPU machine capped a 500/s burst at ~30/s whatever the receiver did. Here requests
are written by hand over a fixed set of keep-alive connections (~50 µs each). Each
request is due at its point of the schedule; its latency counts from then, so a
request that waited for a free connection is charged for the wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

__all__ = ["Answer", "send_open_loop"]


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the connection failed
    latency: float  # seconds from the request's due time to its answer
    answered_at: float  # time.perf_counter() of the answer
    body: dict


async def send_open_loop(
    host: str, port: int, path: str, bodies: list[bytes], seconds: float, connections: int = 64
) -> tuple[list[Answer], float]:
    """POST each body, evenly spread over `seconds`; the answers, and the schedule's start."""
    start = time.perf_counter() + 0.3
    due: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    answers: list[Answer | None] = [None] * len(bodies)

    async def schedule() -> None:
        for i in range(len(bodies)):
            at = start + i * seconds / len(bodies)
            if (wait := at - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            due.put_nowait((i, at))
        for _ in range(connections):
            due.put_nowait(None)

    async def connection() -> None:
        reader = writer = None
        while (item := await due.get()) is not None:
            i, at = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(bodies[i])}\r\n\r\n"
                )
                writer.write(head.encode() + bodies[i])
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, body = 0, {}
                if writer is not None:
                    writer.close()
                reader = writer = None
            now = time.perf_counter()
            answers[i] = Answer(status, now - at, now, body)
        if writer is not None:
            writer.close()

    await asyncio.gather(schedule(), *(connection() for _ in range(connections)))
    return [a for a in answers if a is not None], start


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    data = await reader.readexactly(length)
    try:
        return status, json.loads(data) if data else {}
    except ValueError:
        return status, {}
