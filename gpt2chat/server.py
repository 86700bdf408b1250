"""Serving the Gradio app: port checks before anything loads, a request-size limit, and uvicorn.

Gradio parses a request body into Python strings before any app code can look at it: a 100 MB message cost 20 s
and 0.5 GB of resident memory that never came back. ``BodySizeLimit`` refuses such a request at the ASGI layer,
from its Content-Length header or, for a chunked body, as soon as the bytes received pass the limit.
"""

from __future__ import annotations

import errno
import json
import socket

# A chat request carries the message (at most 2,000 characters), the settings and the conversation so far;
# 1 MiB holds hundreds of turns.
MAX_REQUEST_BYTES = 1 << 20


class PortUnavailable(ValueError):
    pass


def check_port(host: str, port: int) -> None:
    """Fail in one line before the model loads, rather than after it: a port out of range or already in use."""
    if not 1 <= port <= 65535:
        raise PortUnavailable(f"--port must be between 1 and 65535 (got {port})")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"port {port} on {host} is already in use; pick another with --port") from None
        raise PortUnavailable(f"cannot listen on {host}:{port}: {error.strerror}") from None


class BodySizeLimit:
    """Pure ASGI middleware (streaming responses pass through untouched): HTTP bodies over ``max_bytes`` get 413."""

    def __init__(self, app, max_bytes: int = MAX_REQUEST_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # The app sees the client go away; the oversized body is never assembled.
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, limited_receive, send)

    async def _refuse(self, send):
        body = json.dumps({"error": f"request too large: at most {self.max_bytes:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def serve(demo, host: str, port: int, *, launch_options: dict, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
    """Serve ``demo`` (already queued) with uvicorn behind the size limit; blocks until stopped."""
    import fastapi
    import gradio as gr
    import uvicorn

    app = fastapi.FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)
    app = gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, show_error=True,
                              **launch_options)
    print(f"Serving on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
