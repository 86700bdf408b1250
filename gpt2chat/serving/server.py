"""Serving the Gradio app: port checks before anything loads, per-client request budgets, a request-size limit, chat
histories and arguments checked before Gradio reads them, closed upload and deep-link routes, Gradio's and FastAPI's
errors without request values, capped log lines, bounded session state, and uvicorn; and
``served_app``, which runs ``app.py`` in a child process on a free loopback port for the tests and benchmarks.

Gradio parses a request body into Python strings before any app code can look at it: a 100 MB message cost 20 s
and 0.5 GB of resident memory that never came back. ``BodySizeLimit`` refuses such a request at the ASGI layer,
from its Content-Length header or, for a chunked body, as soon as the bytes received pass the limit;
``HistoryGate`` then reads the bounded JSON and refuses (422) or cuts what Gradio would otherwise validate at length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

# A chat request carries the message (at most 2,000 characters), the settings and the conversation so far; the
# engine reads the last three turns, and 256 KiB holds about fifty.
MAX_REQUEST_BYTES = 256 << 10
# Gradio keeps the chat history in per-session state: an internal event copies there whatever history a request
# sends (one client parked 0.95 MB per session, 300 sessions +286 MB never freed: issue 23), and every /chat call
# adds its message and reply to it, without end. A session keeps the most recent HISTORY_CHARS characters of a
# history (about twenty answers with their NIH text; older messages are dropped) and Gradio keeps STATE_SESSIONS
# sessions: at most about 16 million characters in all.
STATE_SESSIONS = 256
HISTORY_CHARS = 64_000
# ... and at most HISTORY_MESSAGES messages (a history of 3,000 empty messages is 3,000 objects to validate).
HISTORY_MESSAGES = 200
# Longer log lines are cut: one malformed 824 KB history wrote 48,000 lines (3 MB) to the log.
MAX_LOG_CHARS = 500


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


ROLES = ("user", "assistant", "system")
MALFORMED_HISTORY = ("a chat history must be a list of messages, each with a role ('user' or 'assistant') and text "
                     "content")


def _is_history(value) -> bool:
    """A value that claims to be a chat history: a non-empty list of objects, one of them with a role."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and \
        any(isinstance(item, dict) and "role" in item for item in value)


def _well_formed(message) -> bool:
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        return False
    content = message.get("content")
    if isinstance(content, list):
        return all(isinstance(part, (str, dict)) for part in content)
    return isinstance(content, (str, dict))


class HistoryGate:
    """Pure ASGI middleware for the API's JSON requests (every route's body is at most ``BodySizeLimit``'s): each
    argument that is a chat history is checked and cut before Gradio parses it. A history with a message that is
    not a message (a role other than user, assistant or system; content that is not text) gets 422 with a fixed
    message, never the value; a longer one keeps its most recent messages (``bounded_history``: what the session
    would keep anyway). Gradio validated each message of a 3,000-message history, and answered its question, before
    the app could look at it (issue 23's soak)."""

    def __init__(self, app, max_chars: int = HISTORY_CHARS, max_messages: int = HISTORY_MESSAGES,
                 arguments: dict | None = None):
        self.app, self.max_chars, self.max_messages = app, max_chars, max_messages
        self.arguments = arguments or {}  # fn_index or api_name -> a check per argument (``argument_checks``)

    async def __call__(self, scope, receive, send):
        # FastAPI reads a body as JSON when it says so or says nothing
        content_type = dict(scope.get("headers") or ()).get(b"content-type", b"json")
        if scope["type"] != "http" or scope.get("method") != "POST" or b"json" not in content_type:
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away (or BodySizeLimit cut it off): nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None  # not ours to judge: Gradio refuses it
        refusal = self._refusal(scope.get("path", ""), parsed) if isinstance(parsed, dict) else None
        if refusal:
            return await _json_response(send, 422, {"error": refusal})
        checked = self._check(parsed) if isinstance(parsed, dict) else parsed
        if checked is _MALFORMED:
            return await _json_response(send, 422, {"error": MALFORMED_HISTORY})
        if checked is not parsed:
            body = json.dumps(checked).encode()
            scope = {**scope, "headers": [(k, v) for k, v in scope.get("headers") or () if k != b"content-length"]
                     + [(b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _refusal(self, path: str, request: dict) -> str | None:
        """What is wrong with an argument of the function the request calls (by ``fn_index``, or by the API name
        its path ends with), as a fixed message; None when nothing is."""
        fn = request.get("fn_index")
        if not isinstance(fn, int) or isinstance(fn, bool):
            match = _API_PATH.search(path)
            fn = match.group(1) if match else None
        checks, data = self.arguments.get(fn), request.get("data")
        if not checks or not isinstance(data, list):
            return None
        return next((message for (check, message), value in zip(checks, data) if check and not check(value)), None)

    def _check(self, request: dict):
        """The request with its histories cut; ``_MALFORMED`` when one is malformed; the request itself when
        nothing changed. The arguments are ``data`` (a list, or named arguments) or, without it (``/call/v2``),
        the body's own values."""
        data = request.get("data", request)
        values = dict(enumerate(data)) if isinstance(data, list) else data if isinstance(data, dict) else {}
        changed = {}
        for key, value in values.items():
            if not _is_history(value):
                continue
            if not all(_well_formed(m) for m in value):
                return _MALFORMED
            recent = value[-self.max_messages:] if len(value) > self.max_messages else value
            cut = bounded_history(recent, self.max_chars)
            if cut is not value:
                changed[key] = cut
        if not changed:
            return request
        if isinstance(data, list):
            data = [changed.get(i, v) for i, v in enumerate(data)]
        else:
            data = {**data, **changed}
        return data if "data" not in request else {**request, "data": data}


_MALFORMED = object()
_API_PATH = re.compile(r"/(?:call/v2|call|run|api)/([^/]+)/?$")


def _finite(value, low: float, high: float) -> bool:
    """A number (or its text, as the app's own checks take it) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return False
    return math.isfinite(number) and low <= number <= high


def _flag(value) -> bool:
    return isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)) or \
        (isinstance(value, str) and value.strip().lower() in ("true", "false"))


def argument_checks(demo) -> dict:
    """For ``HistoryGate``: each event's sliders and checkboxes, by fn_index and API name, as (check, fixed message)
    pairs, accepting what the app's own checks accept (``ui.sampling_config``): a value of the wrong kind is refused
    before Gradio's queue runs it (a /chat call with text for its temperature took a full pass through the queue to
    be refused, and Gradio's check echoed the value)."""
    import gradio as gr

    checks = {}
    for fn in demo.fns.values():
        per_argument = []
        for component in fn.inputs:
            name = getattr(component, "label", None) or type(component).__name__.lower()
            if isinstance(component, gr.Slider):
                low, high = component.minimum, component.maximum
                per_argument.append((lambda v, low=low, high=high: _finite(v, low, high),
                                     f"{name} must be a number between {low:g} and {high:g}"))
            elif isinstance(component, gr.Checkbox):
                per_argument.append((_flag, f"{name} must be true or false"))
            else:
                per_argument.append((None, None))
        if any(check for check, _ in per_argument):
            checks[fn._id] = per_argument
            if fn.api_name:
                checks[fn.api_name] = per_argument
    return checks


async def _json_response(send, status: int, content: dict) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ClosedRoutes:
    """Pure ASGI middleware refusing routes the app does not use: file uploads (the app has no file input, and
    Gradio kept every uploaded file in /tmp/gradio until restart, at 41 MB/s from one client)."""

    # Deep links: Gradio writes the values a session last sent (messages, the conversation) to a file in its upload
    # folder for every call, to any client that names its session; the app offers no deep links.
    CLOSED = ("/upload", "/gradio_api/upload", "/gradio_api/deep_link")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path", "").rstrip("/") in self.CLOSED:
            body = b'{"error": "this app takes no files"}'
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        return await self.app(scope, receive, send)


class _WithheldTraceback:
    """Stands in for the ``traceback`` module inside Gradio's request handling: Gradio prints the traceback of a
    failed request, and its input checks put the request's values in the message ("the value passed ... was:
    'my ssn ...'"). One line naming the exception type is logged instead."""

    def __getattr__(self, name):
        import traceback

        return getattr(traceback, name)

    @staticmethod
    def print_exc(*args, **kwargs):
        error = sys.exc_info()[1]
        logging.getLogger("gpt2chat.server").warning(
            "a request failed in Gradio: %s (details withheld: they may hold request values)",
            type(error).__name__ if error else "unknown error")


def _size(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, str):
        return len(content)
    parts = content if isinstance(content, (list, tuple)) else [content]
    return sum(len(str(part.get("text", ""))) if isinstance(part, dict) else len(str(part)) for part in parts)


def bounded_history(value, max_chars: int = HISTORY_CHARS):
    """A chat history (a list of message dicts) cut to its most recent messages totalling at most ``max_chars``
    characters of text (a last message longer than that keeps its first ``max_chars``); any other value as it is."""
    if not isinstance(value, list) or not value or not all(isinstance(m, dict) and "role" in m for m in value):
        return value
    kept, total = [], 0
    for message in reversed(value):
        size = _size(message)
        if total + size > max_chars:
            if not kept:
                text = message.get("content")
                text = text if isinstance(text, str) else "\n".join(
                    str(p.get("text", "")) for p in (text if isinstance(text, list) else []) if isinstance(p, dict))
                kept.append({"role": message["role"], "content": text[:max_chars]})
            return kept[::-1]
        kept.append(message)
        total += size
    return value


def bound_session_state(max_chars: int = HISTORY_CHARS) -> None:
    """Gradio's sessions keep at most ``max_chars`` of any chat history put in their state (``bounded_history``),
    and no longer mirror every value a request sends into the session's deep-link copy (its only reader is the
    deep-link route, which ``ClosedRoutes`` closes)."""
    import gradio.blocks
    import gradio.route_utils
    import gradio.state_holder
    from gradio.components import State

    original = gradio.state_holder.SessionState
    original = getattr(original, "unbounded", original)

    class BoundedSessionState(original):
        unbounded = original

        def __setitem__(self, key, value):
            if isinstance(self.blocks_config.blocks.get(key), State):
                value = bounded_history(value, max_chars)
            super().__setitem__(key, value)

        def _update_value_in_config(self, key, value):
            pass

    for module in (gradio.state_holder, gradio.blocks, gradio.route_utils):
        module.SessionState = BoundedSessionState


def withhold_request_values() -> None:
    """Gradio's failed-request tracebacks become one line without values (see ``_WithheldTraceback``)."""
    import gradio.queueing
    import gradio.route_utils
    import gradio.routes
    import gradio.utils

    for module in (gradio.queueing, gradio.routes, gradio.route_utils, gradio.utils):
        module.traceback = _WithheldTraceback()


def withhold_validation_values(app) -> None:
    """FastAPI's own check of a request's shape (before Gradio's) answers 422 with each offending value ("input":
    "my ssn ...") in the reply; ``app`` answers with where and what is wrong, never the value."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    async def without_values(request, error: RequestValidationError):
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "invalid")}
                  for e in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RequestValidationError, without_values)


class LogLineCap(logging.Filter):
    """Cuts every log message to ``max_chars`` characters."""

    def __init__(self, max_chars: int = MAX_LOG_CHARS):
        super().__init__()
        self.max_chars = max_chars

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.max_chars:
            record.msg, record.args = message[: self.max_chars] + " … [cut]", ()
        return True


def cap_log_lines(max_chars: int = MAX_LOG_CHARS) -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogLineCap) for f in handler.filters):
            handler.addFilter(LogLineCap(max_chars))


GRACEFUL_SHUTDOWN_S = 5


def serve(demo, host: str, port: int, *, launch_options: dict, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
    """Serve ``demo`` (already queued) with uvicorn behind the size limit; blocks until stopped."""
    import fastapi
    import gradio as gr
    import uvicorn

    from gpt2chat.serving.fairness import ClientRequestLimit

    app = fastapi.FastAPI()
    app.add_middleware(HistoryGate, arguments=argument_checks(demo))  # innermost: bodies BodySizeLimit bounded
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)
    app.add_middleware(ClosedRoutes)
    app.add_middleware(ClientRequestLimit, undeclared_bytes=max_request_bytes)  # outermost: a flood costs least
    withhold_request_values()
    bound_session_state()
    cap_log_lines()
    demo.state_session_capacity = STATE_SESSIONS
    # show_error=False: only the app's own gr.Error messages (which never echo values) reach the client.
    app = gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, show_error=False,
                              max_file_size=1, **launch_options)
    for mounted in (app, *(route.app for route in app.routes if hasattr(route, "app"))):  # Gradio's own app too
        if hasattr(mounted, "add_exception_handler"):
            withhold_validation_values(mounted)
    print(f"Serving on http://{host}:{port}", flush=True)
    # A browser tab's open event stream would otherwise hold a SIGTERM'd server (and its training child) forever.
    # log_config=None: uvicorn's own records go through the root handlers, whose lines are capped.
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)


# --- app.py in a child process, for tests and benchmarks -----------------------------------------------------------

LOOPBACK = "127.0.0.1"


class AppDidNotStart(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class RunningApp:
    url: str
    pid: int


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def served_app(app_dir: str | os.PathLike, log_path: str | os.PathLike, *, env: dict | None = None,
               boot_timeout_s: float = 600.0, args: Sequence[str] = ()):
    """``python app.py`` from ``app_dir`` on a free loopback port, its output in ``log_path``, with ``env`` on top
    of this process's environment (e.g. ``GPT2CHAT_MODEL``) and ``args`` after it (e.g. ``--no-model``). Yields a
    ``RunningApp`` once the API answers; raises ``AppDidNotStart`` (with the log's tail) if it exits or stays silent
    for ``boot_timeout_s``. Always stopped on exit."""
    import httpx

    port = free_port()
    environment = {**os.environ, "GRADIO_SERVER_NAME": LOOPBACK, "GRADIO_SERVER_PORT": str(port),
                   "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                   **(env or {})}
    url = f"http://{LOOPBACK}:{port}"
    log_path = Path(log_path)
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", *args], cwd=app_dir, env=environment, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + boot_timeout_s
        while True:
            if process.poll() is not None:
                raise AppDidNotStart(f"app.py exited with {process.returncode}:\n{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/gradio_api/info", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AppDidNotStart(f"app.py did not answer within {boot_timeout_s:.0f} s:\n{_tail(log_path)}")
            time.sleep(1)
        yield RunningApp(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text(errors="replace")[-chars:]
