"""Per-client fairness: one client cannot take the app's request handling or its answers from everybody else.

    from gpt2chat.serving.fairness import AnswerScheduler, ClientRequestLimit, client_address

* ``client_address``: who a request comes from, the one definition every per-client limit uses: the peer's address,
  or behind trusted proxies (``$GPT2CHAT_PROXY_HOPS``; one on a Hugging Face Space, whose proxy puts the visitor's
  address in ``X-Forwarded-For``) the address the outermost of them saw.
* ``network_of``: the network an address is in (its /24, or /64 for IPv6), as providers hand addresses out: a
  client with many addresses mostly has them in one network, so every per-client limit also holds per network,
  at ``network_share`` (4) clients' worth. A client with addresses in many networks still gets many budgets.
* ``ClientRequestLimit``: ASGI middleware giving each client, and each network, a budget of POST requests and of
  request bytes (token buckets); a client over its budget gets HTTP 429 before its request is read or parsed, so
  a flood costs the server a header check. A person in the browser spends about six requests per message. A
  request the app refuses outright (403, 413, 422: never a click) costs five, and a 429 is sent after a second
  (``tarpit_s``), so a script that waits for its answers is slowed to one refused request a second.
* ``AnswerScheduler``: the answer slots (as many answers at once as the cores serve well), shared by ``/ask``,
  ``/chat`` and the browser chat. When a slot frees, the waiting question of the network, then of the client,
  with the fewest answers running goes first, then that of the network and client served longest ago (round
  robin), then the earliest: a client with many questions waiting, or many addresses, is served in turn with
  everybody else rather than ahead of them; a client's questions beyond ``max_waiting`` (its network's beyond
  ``network_share`` times that) are refused at once.

Issue 23's soak (``benchmarks/soak.py --attackers``) measures what this buys; the README has the figures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
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


def network_of(address: str) -> str:
    """The network an address belongs to, as providers hand them out: its /24 (IPv4) or /64 (IPv6); anything else
    (``unknown``) is its own network. One client with many addresses mostly has them in one such network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


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

    def charge(self, key: str, tokens: float) -> None:
        """Spends ``tokens`` whatever the level: the bucket may go below zero, and the key waits it off."""
        now = self._clock()
        with self._lock:
            level, then = self._buckets.pop(key, (self.burst, now))
            self._buckets[key] = (min(self.burst, level + (now - then) * self.rate) - tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)


class Penalties:
    """Requests' worth owed by clients whose request the app refused after reading it (an unknown answer reference,
    a rating over the limits, an argument of the wrong kind): ``ClientRequestLimit`` charges them to the client's
    budget at its next request. A refusal that got through to the app cost a pass through Gradio's queue; a
    person's clicks never owe anything. Clients are bounded in number (least recently charged dropped)."""

    def __init__(self, max_keys: int = 10_000):
        self.max_keys = max_keys
        self._owed: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, client: str, requests: float) -> None:
        with self._lock:
            self._owed[client] = self._owed.pop(client, 0.0) + requests
            while len(self._owed) > self.max_keys:
                self._owed.popitem(last=False)

    def pop(self, client: str) -> float:
        with self._lock:
            return self._owed.pop(client, 0.0)


PENALTIES = Penalties()  # the app's refusals (gpt2chat.serving.ui) and the served middleware share it
REFUSAL_COST = 5.0  # requests' worth of one refused request (RequestBudget.refusal_cost, Penalties)


def penalise(client: str, penalties: Penalties = PENALTIES) -> None:
    """Charge ``client`` for a request the app refused (see ``Penalties``)."""
    penalties.add(client, REFUSAL_COST - 1)


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
    # A network (``network_of``) gets this many clients' budgets in all: people behind one school or company
    # network keep a budget each up to that many, and one client's many addresses in one network get no more.
    network_share: float = 4.0
    # A request the app refuses outright (403 closed route, 413 too large, 422 malformed: never a person's click)
    # costs this many requests: a client sending them runs out of budget and gets the cheapest answer, 429.
    refusal_cost: float = REFUSAL_COST
    # A 429 is sent after this delay (at most ``tarpit_max`` held at once, then at once): a client that waits for
    # its answers, as scripts do, is slowed to one request per delay instead of looping on the server's cores.
    tarpit_s: float = 1.0
    tarpit_max: int = 256


class ClientRequestLimit:
    """Pure ASGI middleware: POSTs over the client's budget (``RequestBudget``) get 429 before they are read.
    A body without a declared length is charged ``undeclared_bytes`` (the request-size limit caps it anyway)."""

    def __init__(self, app, budget: RequestBudget = RequestBudget(), undeclared_bytes: int = 256 << 10,
                 clock: Callable[[], float] = time.monotonic, penalties: Penalties = PENALTIES):
        self.app, self.penalties = app, penalties
        share = budget.network_share
        # (bucket, key of a request) pairs: the client's budgets, then its network's
        self.buckets = (
            (TokenBuckets(budget.requests_per_s, budget.request_burst, clock=clock), "client", "requests"),
            (TokenBuckets(budget.bytes_per_s, budget.byte_burst, clock=clock), "client", "bytes"),
            (TokenBuckets(share * budget.requests_per_s, share * budget.request_burst, clock=clock), "network",
             "requests"),
            (TokenBuckets(share * budget.bytes_per_s, share * budget.byte_burst, clock=clock), "network", "bytes"),
        )
        self.undeclared_bytes = undeclared_bytes
        self.byte_burst, self.refusal_cost = budget.byte_burst, budget.refusal_cost
        self.tarpit_s, self.tarpit_max, self._tarpitted = budget.tarpit_s, budget.tarpit_max, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        client = scope_client(scope)
        keys = {"client": client, "network": network_of(client)}
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        size = int(declared) if declared is not None and declared.isdigit() else self.undeclared_bytes
        costs = {"requests": 1.0, "bytes": min(size, self.byte_burst)}
        owed = self.penalties.pop(client)
        if owed:
            for bucket, whose, unit in self.buckets:
                if unit == "requests":
                    bucket.charge(keys[whose], owed)
        # Every bucket is charged only when all allow, so a refused request costs the client nothing more.
        taken = []
        for bucket, whose, unit in self.buckets:
            if not bucket.take(keys[whose], costs[unit]):
                for done, done_whose, done_unit in taken:  # give the tokens back
                    done.take(keys[done_whose], -costs[done_unit])
                return await self._refuse(send)
            taken.append((bucket, whose, unit))

        async def charging_refusals(message):
            if message["type"] == "http.response.start" and message["status"] in REFUSALS:
                for bucket, whose, unit in self.buckets:
                    if unit == "requests":
                        bucket.charge(keys[whose], self.refusal_cost - 1)
            await send(message)

        return await self.app(scope, receive, charging_refusals)

    async def _refuse(self, send):
        if self._tarpitted < self.tarpit_max and self.tarpit_s > 0:
            self._tarpitted += 1  # one event loop: no lock needed
            try:
                await asyncio.sleep(self.tarpit_s)
            finally:
                self._tarpitted -= 1
        await self._send_429(send)

    @staticmethod
    async def _send_429(send):
        body = json.dumps({"error": "too many requests from this client: please wait a few seconds"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


REFUSALS = (403, 413, 422)  # statuses of requests the app refuses outright (closed routes, too large, malformed)

MAX_CLIENTS = 20_000  # clients and networks whose last turn the scheduler remembers


class TooManyWaiting(RuntimeError):
    """The client already has ``max_waiting`` questions waiting or being answered."""


class AnswerScheduler:
    """``slots`` answers at a time, handed out fairly between networks and, within one, between clients (see the
    module docstring).

        with scheduler.turn(client):   # waits for this client's turn; TooManyWaiting when it has too many queued
            answer = engine.reply(...)
    """

    def __init__(self, slots: int = 2, max_waiting: int = 4, network_share: int = 4,
                 network: Callable[[str], str] = network_of):
        if slots < 1 or max_waiting < 1 or network_share < 1:
            raise ValueError("slots, max_waiting and network_share must be at least 1")
        self.slots, self.max_waiting, self.network_share, self._network = slots, max_waiting, network_share, network
        self._running: collections.Counter[str] = collections.Counter()  # clients' and networks' answers running
        self._waiting: dict[int, tuple[str, str]] = {}  # ticket -> (network, client), in arrival order
        self._tickets = itertools.count()
        self._served: collections.OrderedDict[str, int] = collections.OrderedDict()  # client or network -> when
        self._grants = itertools.count()
        self._changed = threading.Condition()

    def _next(self) -> int | None:
        """The ticket that gets the next free slot: its network has the fewest answers running, then the client
        has, then the network and then the client were served longest ago, then it came first."""
        if not self._waiting or sum(self._running[c] for c in self._running if c.startswith("c:")) >= self.slots:
            return None

        def order(ticket: int):
            network, client = self._waiting[ticket]
            return (self._running[network], self._running[client], self._served.get(network, -1),
                    self._served.get(client, -1), ticket)

        return min(self._waiting, key=order)

    def acquire(self, client: str) -> None:
        """Wait for ``client``'s turn at a slot; TooManyWaiting at once when it has ``max_waiting`` questions in, or
        its network ``network_share`` times that."""
        keys = ("n:" + self._network(client), "c:" + client)
        with self._changed:
            for key, limit in zip(keys, (self.max_waiting * self.network_share, self.max_waiting)):
                mine = sum(1 for waiting in self._waiting.values() if key in waiting) + self._running[key]
                if mine >= limit:
                    raise TooManyWaiting(client)
            ticket = next(self._tickets)
            self._waiting[ticket] = keys
            try:
                self._changed.wait_for(lambda: self._next() == ticket)
            finally:
                del self._waiting[ticket]
            for key in keys:
                self._running[key] += 1
                self._served.pop(key, None)
                self._served[key] = next(self._grants)
            while len(self._served) > MAX_CLIENTS:  # the least recently served are forgotten
                self._served.popitem(last=False)
            self._changed.notify_all()  # another slot may still be free for the next in line

    def release(self, client: str) -> None:
        with self._changed:
            for key in ("n:" + self._network(client), "c:" + client):
                self._running[key] -= 1
                if not self._running[key]:
                    del self._running[key]
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
            return sum(n for key, n in self._running.items() if key.startswith("c:")), len(self._waiting)
