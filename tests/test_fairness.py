"""Per-client fairness (issue 23): who the client is, request budgets refused before the app, and answer slots handed
out in turn between clients. The soak that measures what this buys is benchmarks/soak.py --attackers (by hand)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gpt2chat.serving.fairness import (AnswerScheduler, ClientRequestLimit, RequestBudget, TokenBuckets,
                                       TooManyWaiting, client_address, network_of)


def test_the_client_is_the_peer_unless_trusted_proxies_stand_before_the_app():
    assert client_address("10.0.0.5", "1.2.3.4", proxy_hops=0) == "10.0.0.5"  # a forged header changes nothing
    # One proxy (a Space): the entry it appended, not the one the client wrote before it.
    assert client_address("10.16.3.80", "6.6.6.6, 81.2.69.160", proxy_hops=1) == "81.2.69.160"
    assert client_address("10.16.3.80", "81.2.69.160", proxy_hops=2) == "81.2.69.160"
    assert client_address("10.16.3.80", None, proxy_hops=1) == "10.16.3.80"
    assert client_address(None, None, proxy_hops=0) == "unknown"


def test_proxy_hops_come_from_the_environment(monkeypatch):
    from gpt2chat import settings

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv(settings.PROXY_HOPS_ENV, raising=False)
    assert settings.proxy_hops() == 0
    monkeypatch.setenv("SPACE_ID", "you/gpt2chat")
    assert settings.proxy_hops() == 1
    monkeypatch.setenv(settings.PROXY_HOPS_ENV, "0")
    assert settings.proxy_hops() == 0


def test_token_buckets_refill_over_time_per_key():
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=3.0, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b")  # another client has its own budget
    now[0] = 0.5  # one token back
    assert buckets.take("a") and not buckets.take("a")
    assert not buckets.take("b", 5.0)  # more than the burst is never allowed


def _post(middleware, client: str, length: int) -> int:
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "client": (client, 5000),
             "headers": [(b"content-length", str(length).encode())]}
    asyncio.run(middleware(scope, None, send))
    return sent[0]["status"]


def test_a_client_over_its_request_budget_gets_429_before_the_app_and_others_are_not_affected():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    now = [0.0]
    limit = ClientRequestLimit(app, RequestBudget(requests_per_s=1, request_burst=5, bytes_per_s=1000,
                                                  byte_burst=10_000, tarpit_s=0), clock=lambda: now[0])
    assert [_post(limit, "127.0.2.1", 10) for _ in range(7)] == [200] * 5 + [429] * 2
    assert _post(limit, "127.0.1.1", 10) == 200  # an honest client beside the flood
    assert [_post(limit, "127.0.1.2", 6_000) for _ in range(2)] == [200, 429]  # the byte budget
    now[0] = 1.0
    assert _post(limit, "127.0.2.1", 10) == 200  # the budget refills
    assert reached.count("127.0.2.1") == 6 and reached.count("127.0.1.2") == 1


def test_an_address_belongs_to_its_providers_network():
    assert network_of("81.2.69.160") == network_of("81.2.69.7") == "81.2.69.0/24" != network_of("81.2.70.7")
    assert network_of("2001:db8:1:2:aaaa::1") == network_of("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert network_of("::ffff:81.2.69.160") == "81.2.69.0/24"  # an IPv4 client on an IPv6 socket
    assert network_of("unknown") == "unknown" and network_of("flood") == "flood"


def test_many_addresses_in_one_network_share_a_few_clients_budgets():
    """A client with many addresses got a budget per address (issue 23); in one network it gets network_share."""
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    limit = ClientRequestLimit(app, RequestBudget(requests_per_s=0.001, request_burst=5, network_share=2,
                                                  tarpit_s=0), clock=lambda: 0.0)
    statuses = [_post(limit, f"127.0.2.{n}", 10) for n in range(1, 11) for _ in range(5)]
    assert statuses.count(200) == 10 and statuses[:10] == [200] * 10  # two clients' budgets, then 429s
    assert _post(limit, "127.0.3.1", 10) == 200  # another network is not affected


def test_requests_the_app_refuses_cost_more_and_a_429_comes_after_a_delay():
    """Issue 23's soak: attackers looped on requests refused at once (413, 403, 422), on the server's cores."""
    statuses = iter([422, 200, 200, 200])

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": next(statuses), "headers": []})

    now = [0.0]
    limit = ClientRequestLimit(app, RequestBudget(requests_per_s=1, request_burst=6, refusal_cost=5, tarpit_s=0.2),
                               clock=lambda: now[0])
    assert _post(limit, "127.0.2.1", 10) == 422  # refused by the app: five requests' worth spent
    assert [_post(limit, "127.0.2.1", 10) for _ in range(2)] == [200, 429]
    started = time.perf_counter()
    assert _post(limit, "127.0.2.1", 10) == 429 and time.perf_counter() - started >= 0.2  # after the delay
    assert _post(limit, "127.0.3.1", 10) == 200  # others are not charged
    now[0] = 4.0
    assert _post(limit, "127.0.2.1", 10) == 200  # the budget refills


def test_a_refusal_inside_the_app_is_charged_at_the_clients_next_request():
    from gpt2chat.serving.fairness import Penalties, penalise

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    penalties = Penalties()
    limit = ClientRequestLimit(app, RequestBudget(requests_per_s=0.001, request_burst=6, tarpit_s=0),
                               clock=lambda: 0.0, penalties=penalties)
    penalise("127.0.2.1", penalties)  # four more requests' worth than the request itself
    assert [_post(limit, "127.0.2.1", 10) for _ in range(3)] == [200, 200, 429]
    assert [_post(limit, "127.0.3.1", 10) for _ in range(3)] == [200] * 3  # nobody else owes anything


def test_api_arguments_of_the_wrong_kind_are_charged_to_the_caller():
    import gradio as gr

    from gpt2chat.serving import fairness, ui

    ask = ui.make_ask_fn(_SlowEngine())
    fairness.PENALTIES.pop("127.0.2.9")
    with pytest.raises(gr.Error, match="temperature must be"):
        ask("What is gout?", "my ssn 078-05-1120", request=_request("127.0.2.9"))
    assert fairness.PENALTIES.pop("127.0.2.9") == fairness.REFUSAL_COST - 1
    chat = ui.make_chat_fn(_SlowEngine())
    with pytest.raises(gr.Error, match="grounded must be"):
        list(chat("What is gout?", [], 0.7, 64, "my ssn", False, _request("127.0.2.9")))
    assert fairness.PENALTIES.pop("127.0.2.9") == fairness.REFUSAL_COST - 1


def test_gets_are_not_charged():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    sent = []

    async def send(message):
        sent.append(message)

    limit = ClientRequestLimit(app, RequestBudget(request_burst=1))
    for _ in range(5):
        asyncio.run(limit({"type": "http", "method": "GET", "client": ("127.0.0.1", 1), "headers": []}, None, send))
    assert [m["status"] for m in sent] == [200] * 5


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_freed_slot_goes_to_the_client_with_fewest_answers_running_not_to_the_earliest_flood():
    scheduler = AnswerScheduler(slots=1, max_waiting=3)
    order, release = [], threading.Event()

    def ask(client: str, label: str) -> None:
        with scheduler.turn(client):
            order.append(label)
            release.wait(5)

    first = threading.Thread(target=ask, args=("flood", "flood-1"))
    first.start()
    _wait_until(lambda: scheduler.load() == (1, 0))
    threads = [threading.Thread(target=ask, args=("flood", f"flood-{n}")) for n in (2, 3)]
    for waiting, thread in enumerate(threads, 1):  # the flood's next questions wait first...
        thread.start()
        _wait_until(lambda: scheduler.load() == (1, waiting))
    honest = threading.Thread(target=ask, args=("honest", "honest"))
    honest.start()  # ...then an honest client asks
    _wait_until(lambda: scheduler.load() == (1, 3))
    with pytest.raises(TooManyWaiting):  # the flood's fourth question in the system is refused at once
        scheduler.acquire("flood")
    release.set()
    for thread in (first, *threads, honest):
        thread.join(10)
    assert order[:2] == ["flood-1", "honest"], order  # the honest client was served before the flood's backlog
    assert scheduler.load() == (0, 0)


def test_a_network_takes_one_turn_however_many_addresses_it_asks_from():
    scheduler = AnswerScheduler(slots=1, max_waiting=1, network_share=3)
    order, release = [], threading.Event()

    def ask(client: str) -> None:
        with scheduler.turn(client):
            order.append(client)
            release.wait(5)

    flood = [threading.Thread(target=ask, args=(f"127.0.2.{n}",)) for n in (1, 2, 3)]
    for waiting, thread in enumerate(flood):  # one client's three addresses, each with a question in
        thread.start()
        _wait_until(lambda: scheduler.load() == (1, waiting))
    with pytest.raises(TooManyWaiting):  # a fourth address of that network: over the network's share
        scheduler.acquire("127.0.2.4")
    honest = threading.Thread(target=ask, args=("81.2.69.160",))
    honest.start()
    _wait_until(lambda: scheduler.load() == (1, 3))
    release.set()
    for thread in (*flood, honest):
        thread.join(10)
    assert order[:2] == ["127.0.2.1", "81.2.69.160"], order  # served before the network's other addresses
    assert scheduler.load() == (0, 0)


def test_slots_bound_the_answers_running_at_once():
    scheduler = AnswerScheduler(slots=2, max_waiting=8)
    running, peak, lock = [0], [0], threading.Lock()

    def ask(client: str) -> None:
        with scheduler.turn(client):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=ask, args=(f"c{n % 3}",)) for n in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2 and scheduler.load() == (0, 0)
    with pytest.raises(ValueError):
        AnswerScheduler(slots=0)


# --- the answer endpoints take the client's turn --------------------------------------------------------------------

class _SlowEngine:
    """Stands in for ChatEngine: answers after ``release`` is set, counting the answers it started."""

    def __init__(self):
        from gpt2chat.chat.engine import ChatReply

        self.reply_value = ChatReply(answer="Gout is arthritis.", finished=True)
        self.release, self.started = threading.Event(), []

    def reply(self, message, **kwargs):
        self.started.append(message)
        self.release.wait(10)
        return self.reply_value

    def stream(self, message, turns, **kwargs):
        yield self.reply(message)


def _request(address: str):
    from types import SimpleNamespace

    return SimpleNamespace(client=SimpleNamespace(host=address), headers={}, session_hash="s")


@pytest.mark.parametrize("endpoint", ["ask", "chat"])
def test_a_client_with_too_many_questions_in_is_refused_at_once_and_others_still_get_their_turn(endpoint):
    import gradio as gr

    from gpt2chat.serving import ui

    engine, scheduler = _SlowEngine(), AnswerScheduler(slots=1, max_waiting=1)
    if endpoint == "ask":
        answer = ui.make_ask_fn(engine, scheduler=scheduler)
    else:
        chat = ui.make_chat_fn(engine, scheduler=scheduler)

        def answer(message, request):
            return list(chat(message, [], 0.7, 64, True, False, request))[-1]
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", answer("What is gout?",
                                                                                request=_request("127.0.2.1"))))
    first.start()
    _wait_until(lambda: scheduler.load() == (1, 0))
    with pytest.raises(gr.Error, match="several questions waiting"):  # refused before any work is done for it
        answer("What is gout again?", request=_request("127.0.2.1"))
    other = threading.Thread(target=lambda: results.setdefault("other", answer("How is gout treated?",
                                                                                request=_request("127.0.1.1"))))
    other.start()
    _wait_until(lambda: scheduler.load() == (1, 1))  # another client waits for the slot, it is not refused
    engine.release.set()
    for thread in (first, other):
        thread.join(10)
    assert engine.started == ["What is gout?", "How is gout treated?"]
    assert "Gout is arthritis." in results["first"] and "Gout is arthritis." in results["other"]
    assert scheduler.load() == (0, 0)


def test_the_chat_endpoint_takes_its_turn_as_the_calling_client():
    """Gradio hands the chat function the request only when it reads the gr.Request annotation: through the served
    /chat endpoint the scheduler sees the caller's address."""
    import gradio as gr
    from gradio_client import Client

    from gpt2chat.serving import ui
    from gpt2chat.serving.server import free_port

    engine, seen = _SlowEngine(), []
    engine.release.set()

    class Recording(AnswerScheduler):
        def acquire(self, client: str) -> None:
            seen.append(client)
            super().acquire(client)

    with gr.Blocks() as demo:
        gr.ChatInterface(ui.make_chat_fn(engine, scheduler=Recording()), additional_inputs=ui.settings_inputs(),
                         api_name="chat")
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        reply = Client(url, verbose=False).predict("What is gout?", 0.7, 64, True, False, api_name="/chat")
    finally:
        demo.close()
    assert "Gout is arthritis." in str(reply) and seen == ["127.0.0.1"]
