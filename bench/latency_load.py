"""bench.latency's HTTP client and SMTP sink, kept out of the figures they take.

- **The client** writes each request as bytes made before its `sent` moment is read, on a
  keep-alive connection of its own pool, and reads the status line, the headers and a
  Content-Length body, nothing more. httpx spent about 0.8 ms of Python per request between
  the two stamps (its `GET /health` round trip 1.27 ms at p50 where wrk's is 0.44 ms), which
  the bench counted in the API's answer. bench/api_reads.py times the reads at scale on it too.
- **The sink** is an aiosmtpd server in a process of its own, answering the load's process
  with what arrived when asked. In the load's process its thread took the interpreter from
  the client between a request's stamps.

The stamps are `time.perf_counter()` readings in both processes: on Linux, CLOCK_MONOTONIC,
one clock for the whole host.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import multiprocessing
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.procs import free_port

SEQ_IN_SUBJECT = re.compile(r"seq=(\d+)")
# Seconds a connection may have been idle to be used again: uvicorn closes one at 5 s
# (--timeout-keep-alive), and a request written as it closes would never be answered.
MAX_IDLE = 2.0


class ProtocolError(RuntimeError):
    """An answer this client does not read: not HTTP/1.x, or a body of no stated length."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    sent: float  # perf_counter just before the request's bytes were written
    answered: float  # perf_counter once the whole answer was read


class Client:
    """HTTP/1.1 requests to one server over a pool of keep-alive connections: one connection
    per request in flight, opened when none is idle, so a late answer never holds up a send."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        found = re.fullmatch(r"http://([^:/]+):(\d+)/?", base_url)
        if found is None:
            raise ValueError(f"{base_url!r}: expected http://host:port")
        self._host, self._port = found.group(1), int(found.group(2))
        lines = [f"Host: {self._host}:{self._port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._headers = "".join(line + "\r\n" for line in lines)
        # Idle connections, the last used on top, with when each went idle.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._open: set[asyncio.StreamWriter] = set()

    def request_bytes(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """The whole request, made before it is timed."""
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is None:
            return (head + "\r\n").encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    async def send(self, request: bytes) -> Answer:
        """Write `request`, read its answer; the connection goes back to the pool after."""
        reader, writer = await self._connection()
        sent = time.perf_counter()
        writer.write(request)
        try:
            status, body, keep = await _read_answer(reader)
        except BaseException:
            self._close(writer)
            raise
        answered = time.perf_counter()
        if keep:
            self._idle.append((reader, writer, time.monotonic()))
        else:
            self._close(writer)
        return Answer(status, body, sent, answered)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server has not closed and will not close before it answers
        (uvicorn closes one idle for 5 s), else a new one."""
        while self._idle:
            reader, writer, idle_since = self._idle.pop()
            if not reader.at_eof() and time.monotonic() - idle_since < MAX_IDLE:
                return reader, writer
            self._close(writer)
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self._open.add(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in list(self._open):
            self._close(writer)
        self._idle.clear()

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """The status, the body and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunks(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        raise ProtocolError(f"an answer without Content-Length or chunks: {headers}")
    return int(parts[1]), body, headers.get("connection", "").lower() != "close"


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (RFC 9112, 7.1), its trailer section skipped."""
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # a trailer field
    return b"".join(chunks)


# --- the sink -----------------------------------------------------------------------------------


@dataclass
class Arrivals:
    """What reached the sink, keyed by the `seq` in each message's subject: when its DATA
    arrived and when its SMTP transaction began (MAIL FROM); messages without a seq."""

    arrivals: dict[int, float] = field(default_factory=dict)
    mail_from: dict[int, float] = field(default_factory=dict)
    unparsed: int = 0


class SinkHandler:
    """aiosmtpd's handler: notes each message's moments in `arrivals`."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.seen = arrivals

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        session.bench_mail_at = time.perf_counter()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        arrived = time.perf_counter()  # first thing: parsing is not part of the latency
        content = envelope.content
        raw = content if isinstance(content, bytes) else content.encode()
        subject = email.parser.BytesHeaderParser().parsebytes(raw).get("Subject", "")
        found = SEQ_IN_SUBJECT.search(str(subject))
        if found is None:
            self.seen.unparsed += 1
        else:
            seq = int(found.group(1))
            self.seen.arrivals.setdefault(seq, arrived)
            self.seen.mail_from.setdefault(seq, getattr(session, "bench_mail_at", arrived))
        return "250 OK"


def _serve(conn: Connection) -> None:
    """The sink process: serve SMTP on a free port (sent first), then answer each "snapshot"
    with what arrived, and each "count" with how many messages did, until "stop"."""
    from aiosmtpd.controller import Controller

    seen = Arrivals()
    port = free_port()
    controller = Controller(SinkHandler(seen), hostname="127.0.0.1", port=port)
    controller.start()
    conn.send(port)
    try:
        while (asked := conn.recv()) != "stop":
            if asked == "count":
                conn.send(len(seen.arrivals))
                continue
            assert asked == "snapshot", asked
            # Copies made while the server's thread may add to them: a dict's copy is atomic.
            conn.send(Arrivals(dict(seen.arrivals), dict(seen.mail_from), seen.unparsed))
    finally:
        controller.stop()


class SinkProcess:
    """The SMTP sink, in a process of its own while the bench runs."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, theirs = context.Pipe()
        self._process = context.Process(target=_serve, args=(theirs,), daemon=True)
        self.port = 0

    def __enter__(self) -> SinkProcess:
        self._process.start()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the SMTP sink's process did not start within 30 s")
        self.port = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):  # gone already
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def snapshot(self) -> Arrivals:
        self._conn.send("snapshot")
        arrived: Arrivals = self._conn.recv()
        return arrived

    def count(self) -> int:
        """How many messages with a seq arrived: a snapshot's size, without copying it."""
        self._conn.send("count")
        count: int = self._conn.recv()
        return count
