"""Per-client fairness: one client cannot take the app's request handling or its answers from everybody else.

    from gpt2chat.serving.fairness import AnswerScheduler, ClientRequestLimit, client_address

* ``client_address``: who a request comes from, the one definition every per-client limit uses: the peer's address,
  or behind trusted proxies (``$GPT2CHAT_PROXY_HOPS``; one on a Hugging Face Space, whose proxy puts the visitor's
  address in ``X-Forwarded-For``) the address the outermost of them saw.
* ``ClientRequestLimit``: ASGI middleware giving each client a budget of POST requests and of request bytes (token
  buckets); a client over its budget gets HTTP 429 before its request is read or parsed, so a flood costs the
  server a header check. A person in the browser spends about six requests per message.
* ``AnswerScheduler``: the answer slots (as many answers at once as the cores serve well), shared by ``/ask``,
  ``/chat`` and the browser chat. When a slot frees, the waiting question of the client with the fewest answers
  running goes first, then that of the client served longest ago (round robin), then the earliest: a client with
  many questions waiting is served in turn with everybody else rather than ahead of them; a client's questions
  beyond ``max_waiting`` are refused at once.

Issue 23's soak (``benchmarks/soak.py --attackers``) measures what this buys; the README has the figures.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import threading
import time
from typing import Callable, Iterator

from gpt2chat import settings


def client_address(peer: str | None, forwarded_for: str | None = None, proxy_hops: int | None = None) -> str:
    """The client's address. Behind ``proxy_hops`` trusted proxies it is the ``proxy_hops``-th entry of
    ``X-Forwarded-For`` counted from the right (each proxy appends the address it saw; entries further left were
    written by the client and can be forged); without proxies, the peer's address."""
    hops = settings.proxy_hops() if proxy_hops is None else proxy_hops
    if hops > 0 and forwarded_for:
        entries = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
        if entries:
            return entries[-min(hops, len(entries))]
    return peer or "unknown"


def scope_client(scope: dict) -> str:
    """``client_address`` of an ASGI request."""
    headers = dict(scope.get("headers") or ())
    forwarded = headers.get(b"x-forwarded-for")
    peer = (scope.get("client") or (None,))[0]
    return client_address(peer, forwarded.decode("latin-1") if forwarded else None)


class TokenBuckets:
    """A bucket per key holding up to ``burst`` tokens, refilled at ``rate`` per second; ``take(key, n)`` spends n
    tokens when there are enough. Keys are bounded in number (least recently used dropped)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, tokens: float = 1.0) -> bool:
        now = self._clock()
        with self._lock:
            level, then = self._buckets.pop(key, (self.burst, now))
            level = min(self.burst, level + (now - then) * self.rate)
            allowed = level >= tokens
            self._buckets[key] = (level - tokens if allowed else level, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed


@dataclasses.dataclass(frozen=True)
class RequestBudget:
    # A message sent in the browser costs about six POSTs (the submit, the answer, syncing the chat, saving it),
    # a page load three or four: 30 at once and 2 a second sustained leave a person room to click through
    # follow-ups. Issue 23's probe sent about 370 requests a minute from one client.
    requests_per_s: float = 2.0
    request_burst: float = 30.0
    # A long conversation synced after every message is tens of KB; the probe parked 230 KB histories back to back.
    bytes_per_s: float = 128 << 10
    byte_burst: float = 1 << 20


class ClientRequestLimit:
    """Pure ASGI middleware: POSTs over the client's budget (``RequestBudget``) get 429 before they are read.
    A body without a declared length is charged ``undeclared_bytes`` (the request-size limit caps it anyway)."""

    def __init__(self, app, budget: RequestBudget = RequestBudget(), undeclared_bytes: int = 256 << 10,
                 clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.requests = TokenBuckets(budget.requests_per_s, budget.request_burst, clock=clock)
        self.bytes = TokenBuckets(budget.bytes_per_s, budget.byte_burst, clock=clock)
        self.undeclared_bytes = undeclared_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        client = scope_client(scope)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        size = int(declared) if declared is not None and declared.isdigit() else self.undeclared_bytes
        # Both buckets are charged only when both allow, so a refused request costs the client nothing more.
        if not self.requests.take(client):
            return await self._refuse(send)
        if not self.bytes.take(client, min(size, self.bytes.burst)):
            self.requests.take(client, -1.0)  # give the request token back
            return await self._refuse(send)
        return await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send):
        body = json.dumps({"error": "too many requests from this client: please wait a few seconds"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


MAX_CLIENTS = 10_000  # clients whose last turn the scheduler remembers


class TooManyWaiting(RuntimeError):
    """The client already has ``max_waiting`` questions waiting or being answered."""


class AnswerScheduler:
    """``slots`` answers at a time, handed out fairly between clients (see the module docstring).

        with scheduler.turn(client):   # waits for this client's turn; TooManyWaiting when it has too many queued
            answer = engine.reply(...)
    """

    def __init__(self, slots: int = 2, max_waiting: int = 4):
        if slots < 1 or max_waiting < 1:
            raise ValueError("slots and max_waiting must be at least 1")
        self.slots, self.max_waiting = slots, max_waiting
        self._running: collections.Counter[str] = collections.Counter()
        self._waiting: dict[int, str] = {}  # ticket -> client, in arrival order
        self._tickets = itertools.count()
        self._served: collections.OrderedDict[str, int] = collections.OrderedDict()  # client -> when last served
        self._grants = itertools.count()
        self._changed = threading.Condition()

    def _next(self) -> int | None:
        """The ticket that gets the next free slot (see the module docstring)."""
        if not self._waiting or sum(self._running.values()) >= self.slots:
            return None
        return min(self._waiting, key=lambda ticket: (
            self._running[self._waiting[ticket]], self._served.get(self._waiting[ticket], -1), ticket))

    def acquire(self, client: str) -> None:
        """Wait for ``client``'s turn at a slot; TooManyWaiting at once when it has ``max_waiting`` questions in."""
        with self._changed:
            mine = sum(1 for waiting in self._waiting.values() if waiting == client) + self._running[client]
            if mine >= self.max_waiting:
                raise TooManyWaiting(client)
            ticket = next(self._tickets)
            self._waiting[ticket] = client
            try:
                self._changed.wait_for(lambda: self._next() == ticket)
            finally:
                del self._waiting[ticket]
            self._running[client] += 1
            self._served.pop(client, None)
            self._served[client] = next(self._grants)
            if len(self._served) > MAX_CLIENTS:  # the least recently served are forgotten
                self._served.popitem(last=False)
            self._changed.notify_all()  # another slot may still be free for the next in line

    def release(self, client: str) -> None:
        with self._changed:
            self._running[client] -= 1
            if not self._running[client]:
                del self._running[client]
            self._changed.notify_all()

    @contextlib.contextmanager
    def turn(self, client: str) -> Iterator[None]:
        self.acquire(client)
        try:
            yield
        finally:
            self.release(client)

    def load(self) -> tuple[int, int]:
        """(answers running, questions waiting)."""
        with self._changed:
            return sum(self._running.values()), len(self._waiting)
