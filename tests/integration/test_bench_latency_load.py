"""bench.latency's own client and sink (bench/latency_load.py), against real sockets: the client
reads answers on kept connections, and the sink, in its own process, reports what arrived."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

import pytest

from bench.latency_load import Answer, Client, ProtocolError, SinkProcess
from tests.loops import run_loop


async def _serve_then_ask(
    answers: list[bytes], requests: list[bytes]
) -> tuple[list[bytes], list[Answer], int]:
    """A server that reads each request whole and writes the next canned answer; what it
    read, and what the client got back."""
    received: list[bytes] = []
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            received.append(head + await reader.readexactly(length))
            writer.write(answers.pop(0))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"})
    got: list[Answer] = []
    try:
        for request in requests:
            got.append(await client.send(request))
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    return received, got, connections


def test_client_writes_whole_requests_and_reads_answers_on_one_kept_connection() -> None:
    client = Client("http://127.0.0.1:1", {"Authorization": "Bearer k"})
    post = client.request_bytes("POST", "/events/send", b'{"a":1}')
    get = client.request_bytes("GET", "/health")
    answers = [
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 9\r\ncontent-type: application/json\r\n"
        b'\r\n{"ok":1}\n',
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]
    received, got, connections = run_loop(_serve_then_ask(answers, [post, get]))
    assert received == [post, get]
    assert post.startswith(b"POST /events/send HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
    assert b"\r\nAuthorization: Bearer k\r\n" in post and post.endswith(b'\r\n\r\n{"a":1}')
    assert b"Content-Length: 7\r\n" in post
    assert [(one.status, one.body) for one in got] == [(202, b'{"ok":1}\n'), (200, b"ok")]
    assert all(one.answered >= one.sent for one in got)
    assert connections == 1


def test_client_reads_a_chunked_answer_and_refuses_one_it_cannot_read() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n3;x=y\r\n!!!\r\n0\r\nT: 1\r\n\r\n"  # an extension, then a trailer
    )
    client = Client("http://127.0.0.1:1", {})
    _, (answer,), _ = run_loop(_serve_then_ask([chunked], [client.request_bytes("GET", "/")]))
    assert (answer.status, answer.body) == (200, b"ok!!!")
    for unreadable, rule in (
        (b"HTTP/1.1 200 OK\r\n\r\nok", "Content-Length or chunks"),
        (b"SMTP 220 hello\r\n\r\n", "status line"),
    ):
        with pytest.raises(ProtocolError, match=rule):
            run_loop(_serve_then_ask([unreadable], [client.request_bytes("GET", "/")]))
    with pytest.raises(ValueError, match="http://host:port"):
        Client("https://example.test", {})


def test_sink_process_reports_what_arrived_by_seq() -> None:
    with SinkProcess() as sink:
        assert sink.snapshot().arrivals == {} and sink.count() == 0
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
            for subject in ("Latency seq=7", "no number"):
                message = EmailMessage()
                message["From"], message["To"], message["Subject"] = "a@b.test", "c@d.test", subject
                message.set_content("hi")
                smtp.send_message(message)
        seen = sink.snapshot()
        assert sink.count() == 1  # the messages with a seq
    assert list(seen.arrivals) == [7] and list(seen.mail_from) == [7]
    assert seen.mail_from[7] <= seen.arrivals[7]
    assert seen.unparsed == 1


def test_client_never_writes_on_a_connection_the_server_closed_or_may_close() -> None:
    """uvicorn closes a connection idle for 5 s: one it closed, or one idle past MAX_IDLE,
    is closed here and a new one opened, instead of a request written into the void."""

    async def ask() -> tuple[list[int], int]:
        connections = 0

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # as an idle timeout would, without saying so in a header

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        client = Client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", {})
        request = client.request_bytes("GET", "/health")
        statuses = []
        try:
            statuses.append((await client.send(request)).status)
            await asyncio.sleep(0.05)  # the server's FIN reaches the client
            statuses.append((await client.send(request)).status)
        finally:
            await client.close()
            server.close()
            await server.wait_closed()
        return statuses, connections

    statuses, connections = run_loop(ask())
    assert statuses == [200, 200] and connections == 2
