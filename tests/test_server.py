"""Serving guards: port checks before loading, and the request-size limit at the ASGI layer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gpt2chat.serving.server import BodySizeLimit, PortUnavailable, check_port


def test_port_out_of_range_or_in_use_is_refused_at_once():
    for port in (0, 99999, -1):
        with pytest.raises(PortUnavailable, match="between 1 and 65535"):
            check_port("127.0.0.1", port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(PortUnavailable, match="already in use"):
            check_port("127.0.0.1", busy.getsockname()[1])


def _call(headers, chunks):
    sent, seen = [], []

    async def receive():
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    async def inner(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "headers": headers}
    asyncio.run(BodySizeLimit(inner, max_bytes=1000)(scope, receive, send))
    return sent, seen


def test_a_declared_oversized_body_gets_413_before_the_app_runs():
    sent, seen = _call([(b"content-length", b"5000000")], [b"x" * 10])
    assert sent[0]["status"] == 413 and b"at most 1,000 bytes" in sent[1]["body"] and not seen


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit():
    sent, seen = _call([], [b"x" * 600, b"x" * 600, b"x" * 600])
    assert seen[-1]["type"] == "http.disconnect" and len(seen) == 2


def test_a_small_body_passes_through():
    sent, seen = _call([(b"content-length", b"10")], [b"x" * 10])
    assert sent[0]["status"] == 200 and seen[0]["body"] == b"x" * 10
