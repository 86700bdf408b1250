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


def test_upload_routes_are_closed_and_other_routes_pass():
    from gpt2chat.serving.server import ClosedRoutes

    def call(path):
        sent, reached = [], []

        async def inner(scope, receive, send):
            reached.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})

        async def send(message):
            sent.append(message)

        asyncio.run(ClosedRoutes(inner)({"type": "http", "path": path, "headers": []}, None, send))
        return sent[0]["status"], reached

    assert call("/gradio_api/upload") == (403, []) and call("/gradio_api/upload/") == (403, [])
    assert call("/gradio_api/deep_link") == (403, [])  # it wrote the session's last values to a file
    assert call("/gradio_api/info") == (200, ["/gradio_api/info"])


def test_gradio_tracebacks_are_one_line_without_values_and_log_lines_are_capped(caplog, capsys):
    import logging

    import gradio.queueing

    from gpt2chat.serving.server import LogLineCap, withhold_request_values

    withhold_request_values()
    caplog.set_level(logging.WARNING)
    try:
        raise ValueError("the value passed to the event handler was: 'my ssn 078-05-1120'")
    except ValueError:
        gradio.queueing.traceback.print_exc()
    assert "078-05-1120" not in caplog.text + capsys.readouterr().err
    assert "a request failed in Gradio: ValueError" in caplog.text
    assert gradio.queueing.traceback.format_exc  # the rest of the module is still there
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("y" * 5000,), None)
    assert LogLineCap(100).filter(record) and len(record.getMessage()) < 120


def _history(sizes):
    return [{"role": "user" if n % 2 == 0 else "assistant", "content": [{"type": "text", "text": "x" * size}]}
            for n, size in enumerate(sizes)]


def test_a_history_keeps_its_most_recent_messages_within_the_budget():
    from gpt2chat.serving.server import bounded_history

    history = _history([400, 300, 200, 100])
    assert bounded_history(history, 1000) is history  # within the budget: untouched
    assert bounded_history(history, 350) == history[2:]  # the oldest dropped, whole
    assert bounded_history(_history([5000]), 100) == [{"role": "user", "content": "x" * 100}]
    assert bounded_history([{"role": "user", "content": "y" * 500}], 50) == [{"role": "user", "content": "y" * 50}]
    assert bounded_history(7, 10) == 7 and bounded_history(["a" * 50], 10) == ["a" * 50]  # not a history


def test_gradio_sessions_keep_bounded_histories_and_no_copy_of_request_values():
    """Issue 23: an internal event parked any history a client sent in session state (0.95 MB per session), and
    every /chat call adds to the session's history without end."""
    import gradio as gr
    import gradio.state_holder

    from gpt2chat.serving.server import bound_session_state

    with gr.Blocks() as demo:
        history, text = gr.State([]), gr.Textbox()
    bound_session_state(max_chars=1000)
    bound_session_state(max_chars=1000)  # twice: still one bound, not a subclass of itself
    try:
        session = gradio.state_holder.SessionState(demo)
        parked = _history([1000] * 230)  # the probe's 230 KB history
        session[history._id] = parked
        kept = session.state_data[history._id]
        assert len(kept) == 1 and kept[0] == parked[-1]
        for _ in range(50):  # a /chat client adding 500 characters a turn
            session[history._id] = session[history._id] + _history([500])
        assert sum(len(m["content"][0]["text"]) for m in session.state_data[history._id]) <= 1000
        session[text._id] = text
        session._update_value_in_config(text._id, "my ssn 078-05-1120")
        assert "078-05-1120" not in str(list(session.components))
    finally:
        bound_session_state()  # the app's own bound for the rest of the session
    assert type(gradio.state_holder.SessionState(demo)).__mro__[1] is gradio.state_holder.SessionState.unbounded


def _gate(body: bytes, content_type: bytes = b"application/json", path: str = "/gradio_api/call/chat", **limits):
    """One POST through HistoryGate: (status sent, response body, the body and headers the app received)."""
    import json

    from gpt2chat.serving.server import HistoryGate

    sent, reached = [], {}
    chunks = [body[:len(body) // 2], body[len(body) // 2:]]  # in two pieces, as a client may send it

    async def receive():
        piece = chunks.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(chunks)}

    async def inner(scope, receive, send):
        pieces = [await receive()]
        while pieces[-1].get("more_body"):
            pieces.append(await receive())
        reached["body"], reached["headers"] = b"".join(p["body"] for p in pieces), dict(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    headers = [(b"content-length", str(len(body)).encode())] + ([(b"content-type", content_type)] if content_type else [])
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    asyncio.run(HistoryGate(inner, **limits)(scope, receive, send))
    answer = json.loads(sent[1]["body"]) if len(sent) > 1 else None
    return sent[0]["status"], answer, reached


def test_a_malformed_history_gets_422_without_its_values_before_gradio_sees_it():
    """Issue 23's soak: Gradio validated each of 3,000 malformed messages and then answered the question."""
    import json

    secret = "078-05-1120"
    for history in ([{"role": 7, "content": {"x": secret}}] * 3000,
                    [{"role": "user", "content": "hi"}, {"role": "admin", "content": secret}],
                    [{"role": "user", "content": 42}]):
        body = json.dumps({"data": ["hi", history, 0.7, 16, True, False]}).encode()
        status, answer, reached = _gate(body)
        assert status == 422 and "role" in answer["error"] and secret not in json.dumps(answer) and not reached
    status, answer, reached = _gate(json.dumps({"message": "hi", "history": [{"role": None, "content": ""}]}).encode())
    assert status == 422 and not reached  # named arguments (/call/v2) too


def test_a_long_history_is_cut_to_its_most_recent_messages_before_gradio_parses_it():
    import json

    history = _history([1000] * 230)  # the soak's parked history: 230 messages of 1,000 characters
    status, _, reached = _gate(json.dumps({"data": [history], "fn_index": 5}).encode(), max_chars=10_000,
                               max_messages=200)
    received = json.loads(reached["body"])
    assert status == 200 and received["fn_index"] == 5 and received["data"][0] == history[-10:]
    assert reached["headers"][b"content-length"] == str(len(reached["body"])).encode()
    many = [{"role": "user", "content": ""}] * 3000  # empty messages: cut by number
    _, _, reached = _gate(json.dumps({"data": ["hi", many]}).encode(), max_messages=200)
    assert len(json.loads(reached["body"])["data"][1]) == 200


def test_requests_without_a_history_pass_through_unchanged():
    import json

    body = json.dumps({"data": ["What is glaucoma?", _history([10, 20]), 0.7, 16, True, False]}).encode()
    assert _gate(body)[2]["body"] == body  # byte for byte: not re-encoded
    for other in (b"{not json", b'{"data": "text"}', b"[1, 2]"):
        assert _gate(other)[2]["body"] == other  # Gradio's to refuse
    malformed = json.dumps({"data": [[{"role": 7}]]}).encode()
    assert _gate(malformed, content_type=b"multipart/form-data")[2]["body"] == malformed  # not JSON: not read
    assert _gate(malformed, content_type=None)[0] == 422  # no content type: FastAPI reads it as JSON


def test_fastapis_shape_check_answers_without_the_values_it_refused():
    """Before Gradio's checks, FastAPI's own answered {"data": "my ssn ..."} with 422 and the value ("input")."""
    import fastapi
    import pydantic
    from fastapi.testclient import TestClient

    from gpt2chat.serving.server import withhold_validation_values

    class Body(pydantic.BaseModel):
        data: list
        fn_index: int | None = None

    app = fastapi.FastAPI()

    def call(body):
        return {"ok": True}

    call.__annotations__ = {"body": Body}  # resolved here: this module's annotations are postponed
    app.post("/call")(call)

    withhold_validation_values(app)
    client = TestClient(app)
    for body in ({"data": "my ssn 078-05-1120"}, {"data": [], "fn_index": "my ssn 078-05-1120"}):
        reply = client.post("/call", json=body)
        assert reply.status_code == 422 and "078-05-1120" not in reply.text
        assert reply.json()["detail"][0]["loc"][0] == "body"  # where and what is wrong are still said
    assert client.post("/call", json={"data": []}).json() == {"ok": True}


def test_arguments_of_the_wrong_kind_get_422_naming_the_argument_before_gradio_runs_the_event():
    """Issue 23's soak: a /chat call with text for its temperature went through Gradio's queue to be refused."""
    import json

    import gradio as gr

    from gpt2chat.serving.server import argument_checks

    with gr.Blocks() as demo:
        inputs = [gr.Textbox(), gr.State([]), gr.Slider(0, 1.5, label="Temperature"), gr.Slider(16, 320),
                  gr.Checkbox(label="Grounded")]
        gr.Button().click(lambda *args: None, inputs, api_name="chat")
    checks = argument_checks(demo)
    secret = "my ssn 078-05-1120"
    for data, message in ((["hi", [], secret, 16, True], "Temperature must be a number between 0 and 1.5"),
                          (["hi", [], 0.7, 16, secret], "Grounded must be true or false"),
                          (["hi", [], True, 16, True], "Temperature must be"), (["hi", [], 0.7, 9999, True], "320")):
        for path, extra in (("/gradio_api/call/chat", {}), ("/gradio_api/queue/join", {"fn_index": 0})):
            status, answer, reached = _gate(json.dumps({"data": data, **extra}).encode(), path=path,
                                            arguments=checks)
            assert status == 422 and message in answer["error"] and "078" not in answer["error"] and not reached
    for data in (["hi", [], 0.7, 16, True], ["hi", [], "0.7", 16.0, "true"]):  # what the app's own checks take
        assert _gate(json.dumps({"data": data}).encode(), arguments=checks)[0] == 200
