"""A loopback stand-in for the OpenAI and Anthropic APIs that bills every request it answers, for budget tests.

It speaks Chat Completions (``POST {openai_url}/chat/completions``) and the
Messages API (``POST {anthropic_url}/messages``) to the official SDKs, keeps a
bill line for every request a real provider would bill, and misbehaves on
demand. It knows nothing of Paymaster: its token counts and prices are its own,
so a test can compare the ledger against what the "provider" billed.

Build and run::

    from billing_server import BillingServer, Fault, Price

    prices = {"gpt-4o-mini": Price("0.15", "0.60", cache_read="0.075"), "gpt-4o": Price("2.50", "10.00")}
    with BillingServer(prices, swap={"gpt-4o-mini": "gpt-4o"}, latency=(0.01, 0.05), seed=7) as server:
        provider = OpenAIProvider(api_key="sk-test", base_url=server.openai_url)   # or AnthropicProvider(
        ...                                                                        #   base_url=server.anthropic_url)
        server.script(Fault(drop="after_request"), Fault(status=429, retry_after=2))  # the next two requests
        ...
        server.bill            # [BillLine(...)], one per billed request, in the order billed
        server.billed_picos    # their total, integer pico-dollars
        server.exchanges       # [Exchange(...)], one per request received, billed or not

``BillingServer(prices, *, swap=None, faults=(), decide=None, output_tokens=20,
input_tokens=quarter_bytes, latency=0.0, seed=0, reply="ok")``:

- ``prices``: ``{model: Price(input, output, cache_read=None, cache_write=None)}``,
  dollars per million tokens (str or Decimal; cache rates default to the input
  rate). A dated snapshot (``gpt-4o-mini-2024-07-18``, ``claude-...-20251001``)
  is priced as its model. A request for a model with no price is answered 404
  ``not_found_error`` and not billed.
- ``swap``: ``{requested: served}`` applied to every request (a ``Fault.serve``
  wins): the response names, and the bill prices, the served model.
- ``faults``: a queue of ``Fault``, one taken per request in arrival order
  (``server.script(*faults)`` appends more); when it is empty, ``decide(call)``
  is asked (a ``Call`` names provider, model, max_tokens, prompt bytes and the
  request number); ``None`` or no ``decide`` means answer plainly.
- ``output_tokens``: output a plain answer reports, capped at ``max_tokens``.
- ``input_tokens``: a function of the prompt's UTF-8 byte count (the text of
  the system prompt, messages and tool results), default ``ceil(bytes / 4)``;
  it must not exceed the byte count (``lambda n: n`` saturates the bound).
- ``latency``: seconds before each answer, fixed or a ``(low, high)`` range
  drawn from ``random.Random(seed)``; a ``Fault.latency`` overrides it.
- ``reply``: the answer text, or a function of the ``Call``. A request that
  forces a tool (Anthropic) gets it as that tool's input (a JSON object text
  as is, anything else as ``{"value": text}``).

``Fault`` fields (combine freely): ``serve="gpt-4o"`` (answer as, and bill,
this model); ``extra_output_tokens=N`` (ignore ``max_tokens``: report
``max_tokens + N`` output tokens); ``omit_usage=True`` (a 200 without usage,
billed); ``malformed=True`` (a 200 whose body is not JSON, billed);
``drop="before_request"`` (reset the connection without billing, as a proxy
that never forwarded it), ``"after_request"`` (read and bill the request, then
close without a response), ``"mid_body"`` (bill, send the headers and half the
body, close); ``status=429`` with ``retry_after=2.0`` / ``500`` / ``503`` /
``529`` / any 4xx (an error answer in the provider's format, not billed);
``latency=0.5`` or ``(0.1, 0.3)``; ``cache_read_tokens`` / ``cache_write_tokens``
(parts of the prompt read from or written to the prompt cache, priced at
those rates).

Billing follows the real providers: a request is billed once the server has
read it whole and decided to answer it, so a drop after that, a cut body, a
client timeout during ``latency``, a malformed or usage-less 200 are all
billed; a drop before reading and every error status are not. Every response
that has headers carries a request id (``x-request-id`` for OpenAI,
``request-id`` for Anthropic), the same one as its bill line.
Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from billing_wire import Wire, answer, error_body, max_tokens, prompt_bytes

Drop = Literal["before_request", "after_request", "mid_body"]
Latency = float | tuple[float, float]
_PICOS_PER_MTOK_DOLLAR = 10**6  # $1 per million tokens is 10**12 picos / 10**6 tokens
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def quarter_bytes(prompt_bytes: int) -> int:
    """The default input token count: a quarter of the prompt's UTF-8 bytes, rounded up."""
    return math.ceil(prompt_bytes / 4)


@dataclass(frozen=True)
class Price:
    """One model's price in dollars per million tokens; cache rates default to the input rate."""

    input: Decimal | str
    output: Decimal | str
    cache_read: Decimal | str | None = None
    cache_write: Decimal | str | None = None

    def cost_picos(self, uncached: int, cache_read: int, cache_write: int, output: int) -> int:
        """Integer pico-dollars for these token counts (rounded up, never down)."""
        rate_in = Decimal(self.input)
        rates = (rate_in, Decimal(self.cache_read or rate_in), Decimal(self.cache_write or rate_in))
        dollars_mtok = uncached * rates[0] + cache_read * rates[1] + cache_write * rates[2]
        dollars_mtok += output * Decimal(self.output)
        return int((dollars_mtok * _PICOS_PER_MTOK_DOLLAR).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True)
class Fault:
    """What the server does to one request; the defaults answer it plainly."""

    serve: str | None = None
    extra_output_tokens: int = 0
    omit_usage: bool = False
    malformed: bool = False
    drop: Drop | None = None
    status: int | None = None
    retry_after: float | None = None
    latency: Latency | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class Call:
    """One request as the server read it, for ``decide`` and ``reply`` functions."""

    number: int
    provider: Wire
    model: str
    max_tokens: int
    prompt_bytes: int
    body: Mapping[str, Any]


@dataclass(frozen=True)
class BillLine:
    """One billed request. ``input_tokens`` is the whole prompt, cache reads and writes included."""

    number: int
    provider: Wire
    requested_model: str
    served_model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_picos: int
    request_id: str


@dataclass(frozen=True)
class Exchange:
    """One request received and what became of it (``outcome``: ``ok``, ``drop:<phase>``, ``status:<n>`` ...)."""

    number: int
    provider: Wire
    requested_model: str
    request_id: str
    outcome: str
    billed: bool
    latency: float


@dataclass
class _Plan:
    """What the handler does with one request, decided under the server's lock."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: Drop | None = None
    latency: float = 0.0
    exchange: Exchange | None = None


class BillingServer:
    """A threaded HTTP server on 127.0.0.1 that answers both wire formats and bills what it answers."""

    def __init__(
        self,
        prices: Mapping[str, Price],
        *,
        swap: Mapping[str, str] | None = None,
        faults: Iterable[Fault] = (),
        decide: Callable[[Call], Fault | None] | None = None,
        output_tokens: int = 20,
        input_tokens: Callable[[int], int] = quarter_bytes,
        latency: Latency = 0.0,
        seed: int = 0,
        reply: str | Callable[[Call], str] = "ok",
    ) -> None:
        self.prices = dict(prices)
        self.swap = dict(swap or {})
        self.decide = decide
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.latency = latency
        self.reply = reply
        self._faults = list(faults)
        self._bill: list[BillLine] = []
        self._exchanges: list[Exchange] = []
        self.errors: list[str] = []
        self._random = random.Random(seed)
        self._lock = threading.RLock()  # reentrant: a decide() or reply() may read the bill
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.billing = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    # -- running ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """The ``base_url`` for ``OpenAIProvider``."""
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        """The ``base_url`` for ``AnthropicProvider``."""
        return self.url

    def start(self) -> BillingServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake waiting handlers, stop serving, close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BillingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and reading the bill ----------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next requests, one each, in arrival order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def bill(self) -> list[BillLine]:
        """Every billed request so far, in the order billed."""
        with self._lock:
            return list(self._bill)

    @property
    def billed_picos(self) -> int:
        """The bill's total, in integer pico-dollars."""
        return sum(line.cost_picos for line in self.bill)

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request received so far, billed or not."""
        with self._lock:
            return list(self._exchanges)

    def price_of(self, model: str) -> Price | None:
        """The price the server bills ``model`` at (a dated snapshot at its model's), or None."""
        return self.prices.get(model) or self.prices.get(_SNAPSHOT.sub("", model))

    # -- the server's side of one request --------------------------------------------------------

    def plan(self, wire: Wire, body: Mapping[str, Any]) -> _Plan:
        """Decide the answer to one request, and bill it when a real provider would (the handler calls this)."""
        with self._lock:
            number = len(self._exchanges) + 1
            request_id = f"req_{wire[:2]}{number:06d}"
            call = Call(number, wire, str(body.get("model")), max_tokens(wire, body), prompt_bytes(wire, body), body)
            fault = self._faults.pop(0) if self._faults else None
            if fault is None and self.decide is not None:
                fault = self.decide(call)
            fault = fault or Fault()
            delay = _draw(fault.latency if fault.latency is not None else self.latency, self._random)
            headers = {"x-request-id" if wire == "openai" else "request-id": request_id}
            served = fault.serve or self.swap.get(call.model, call.model)
            price = self.price_of(served)

            def log(plan: _Plan, outcome: str, billed: bool) -> _Plan:
                exchange = Exchange(number, wire, call.model, request_id, outcome, billed, delay)
                plan.latency, plan.exchange = delay, exchange
                self._exchanges.append(exchange)
                return plan

            if fault.drop == "before_request":
                return log(_Plan(drop="before_request"), "drop:before_request", billed=False)
            if fault.status is None and price is None and served != call.model:
                self.errors.append(f"no price for the served model {served!r}")  # a test's own mistake
            if fault.status is not None or price is None:
                status = fault.status or 404  # a model with no price is one the "provider" does not have
                if fault.retry_after is not None:
                    headers["retry-after"] = f"{fault.retry_after:g}"
                data = json.dumps(error_body(wire, status, served)).encode()
                return log(_Plan(status, data, headers), f"status:{status}", billed=False)
            total = min(self.input_tokens(call.prompt_bytes), call.prompt_bytes)
            read = min(fault.cache_read_tokens, total)
            write = min(fault.cache_write_tokens, total - read)
            output = min(self.output_tokens, call.max_tokens)
            if fault.extra_output_tokens:
                output = call.max_tokens + fault.extra_output_tokens
            cost = price.cost_picos(total - read - write, read, write, output)
            line = BillLine(number, wire, call.model, served, total, output, read, write, cost, request_id)
            self._bill.append(line)
            text = self.reply(call) if callable(self.reply) else self.reply
            data = json.dumps(answer(wire, body, served, text, line, omit_usage=fault.omit_usage)).encode()
            if fault.malformed:
                data = b'{"id": "chatcmpl-1", "choices": [{"mess'
            outcome = f"drop:{fault.drop}" if fault.drop else "malformed" if fault.malformed else "ok"
            return log(_Plan(200, data, headers, fault.drop), outcome, billed=True)

def _draw(latency: Latency, rng: random.Random) -> float:
    if isinstance(latency, tuple):
        low, high = latency
        return rng.uniform(low, high)
    return float(latency)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent tasks connect at once; the default backlog of 5 would stall them
    billing: BillingServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) is no server error; keep test output quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        billing = self.server.billing
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        wire: Wire | None = (
            "openai" if self.path.endswith("/chat/completions") else "anthropic" if self.path.endswith("/messages")
            else None
        )  # fmt: skip
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if wire is None or not isinstance(body, dict):
            self._send(404 if wire is None else 400, b'{"error": "billing server: unknown path or body"}', {})
            return
        plan = billing.plan(wire, body)
        if plan.drop == "before_request":
            # Reset, not a clean close: as a proxy that never passed the request on.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if plan.latency and billing._stopping.wait(plan.latency):
            return
        if plan.drop == "after_request":
            self._hang_up()
            return
        self._send(plan.status, plan.body, plan.headers, cut=plan.drop == "mid_body")

    def _send(self, status: int, data: bytes, headers: Mapping[str, str], *, cut: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2] if cut else data)
            self.wfile.flush()
            if cut:
                self._hang_up()
        except OSError:
            self.close_connection = True  # the client left first

    def _hang_up(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the record is server.exchanges
