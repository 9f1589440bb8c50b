"""The billing stand-in, through the official SDKs and Paymaster's providers: each misbehaviour raises the
right translated error with the right ``billable``, and the bill is what a real provider would have charged.

Expected costs are computed here from the prices and token counts, never read back from the server's line.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal

import anyio
import pytest
from billing_server import BillingServer, Fault, Price

from paymaster.errors import (
    ConnectionDroppedError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider, Provider

from .loopback import ANTHROPIC_KEY, OPENAI_KEY

pytestmark = pytest.mark.anyio

PRICES = {
    "gpt-4o-mini": Price("0.15", "0.60", cache_read="0.075"),
    "gpt-4o": Price("2.50", "10.00", cache_read="1.25"),
    "claude-haiku-4-5": Price("1", "5", cache_read="0.10", cache_write="1.25"),
    "claude-sonnet-4-6": Price("3", "15", cache_read="0.30", cache_write="3.75"),
}
CHEAP = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
PRICEY = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-6"}
PROMPT = "Refund order 1234, please. Ünïcode counts in bytes."  # 53 UTF-8 bytes
MAX_TOKENS = 50


def picos(model: str, uncached: int, output: int, read: int = 0, write: int = 0) -> int:
    """Dollars per million tokens x tokens, in pico-dollars, from the test's own table."""
    p = PRICES[model]
    rate_in = Decimal(p.input)
    dollars_mtok = (uncached * rate_in + read * Decimal(p.cache_read or rate_in)
                    + write * Decimal(p.cache_write or rate_in) + output * Decimal(p.output))  # fmt: skip
    return int(dollars_mtok * 10**6)


def prompt_tokens() -> int:
    return math.ceil(len(PROMPT.encode()) / 4)


@dataclass
class Setup:
    wire: str
    server: BillingServer
    provider: Provider

    async def call(self, model: str | None = None, max_tokens: int = MAX_TOKENS) -> object:
        request = ModelRequest(model=model or CHEAP[self.wire], messages=(Message(role="user", content=PROMPT),),
                               max_tokens=max_tokens)  # fmt: skip
        return await self.provider.complete(request)

    async def fail(self) -> ProviderError:
        with pytest.raises(ProviderError) as caught:
            await self.call()
        return caught.value


@pytest.fixture
def billing() -> Iterator[BillingServer]:
    with BillingServer(PRICES) as server:
        yield server


def _provider(wire: str, server: BillingServer, timeout: float) -> Provider:
    if wire == "openai":
        return OpenAIProvider(api_key=OPENAI_KEY, base_url=server.openai_url, timeout=timeout)
    return AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.anthropic_url, timeout=timeout)


@pytest.fixture(params=["openai", "anthropic"])
async def setup(request: pytest.FixtureRequest, billing: BillingServer) -> AsyncIterator[Setup]:
    server = billing
    provider = _provider(request.param, server, timeout=0.5)
    yield Setup(request.param, server, provider)
    await provider.aclose()  # type: ignore[attr-defined]
    assert not server.errors


async def test_a_plain_call_is_billed_exactly_what_the_response_reports(setup: Setup) -> None:
    response = await setup.call()
    model, tokens = CHEAP[setup.wire], prompt_tokens()
    [line] = setup.server.bill
    assert (line.provider, line.requested_model, line.served_model) == (setup.wire, model, model)
    assert (line.input_tokens, line.output_tokens) == (tokens, 20) == (
        response.usage.input_tokens, response.usage.output_tokens)  # type: ignore[attr-defined]
    assert line.cost_picos == picos(model, tokens, 20) == setup.server.billed_picos
    assert line.request_id == response.request_id  # type: ignore[attr-defined]
    assert tokens <= len(PROMPT.encode())


async def test_a_swapped_model_is_named_in_the_response_and_billed_at_its_price(setup: Setup) -> None:
    setup.server.swap[CHEAP[setup.wire]] = PRICEY[setup.wire]
    response = await setup.call()
    [line] = setup.server.bill
    assert response.model == line.served_model == PRICEY[setup.wire]  # type: ignore[attr-defined]
    assert line.requested_model == CHEAP[setup.wire]
    assert line.cost_picos == picos(PRICEY[setup.wire], prompt_tokens(), 20)


async def test_a_dated_snapshot_is_served_and_priced_as_its_model(setup: Setup) -> None:
    snapshot = f"{CHEAP[setup.wire]}-2024-07-18"
    setup.server.script(Fault(serve=snapshot))
    response = await setup.call()
    assert response.model == snapshot  # type: ignore[attr-defined]
    assert setup.server.billed_picos == picos(CHEAP[setup.wire], prompt_tokens(), 20)


async def test_ignoring_max_tokens_reports_and_bills_more_output_than_asked(setup: Setup) -> None:
    setup.server.script(Fault(extra_output_tokens=70))
    response = await setup.call(max_tokens=30)
    assert response.usage.output_tokens == 100 == setup.server.bill[0].output_tokens  # type: ignore[attr-defined]
    assert setup.server.billed_picos == picos(CHEAP[setup.wire], prompt_tokens(), 100)


async def test_cache_reads_and_writes_are_parts_of_the_prompt_at_their_own_rates(setup: Setup) -> None:
    setup.server.script(Fault(cache_read_tokens=5, cache_write_tokens=3))
    response = await setup.call()
    usage = response.usage  # type: ignore[attr-defined]
    tokens = prompt_tokens()
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (tokens, 5, 3)
    assert setup.server.billed_picos == picos(CHEAP[setup.wire], tokens - 8, 20, read=5, write=3)


async def test_a_200_without_usage_is_billed_and_billable(setup: Setup) -> None:
    setup.server.script(Fault(omit_usage=True))
    err = await setup.fail()
    assert type(err) is MalformedResponseError and err.billable
    assert [line.request_id for line in setup.server.bill] == [err.request_id]


async def test_a_malformed_body_is_billed_and_billable(setup: Setup) -> None:
    setup.server.script(Fault(malformed=True))
    err = await setup.fail()
    assert type(err) is MalformedResponseError and err.billable and len(setup.server.bill) == 1


@pytest.mark.parametrize(("phase", "billed"), [("before_request", 0), ("after_request", 1), ("mid_body", 1)])
async def test_a_dropped_connection_is_billable_and_billed_once_the_request_was_read(
    setup: Setup, phase: str, billed: int
) -> None:
    setup.server.script(Fault(drop=phase))  # type: ignore[arg-type]
    err = await setup.fail()
    assert type(err) is ConnectionDroppedError and err.billable and err.retryable
    assert len(setup.server.bill) == billed
    [exchange] = setup.server.exchanges
    assert (exchange.outcome, exchange.billed) == (f"drop:{phase}", bool(billed))


async def test_a_client_timeout_is_billable_and_billed(setup: Setup) -> None:
    setup.server.script(Fault(latency=5))  # the provider's timeout is 0.5 s
    err = await setup.fail()
    assert type(err) is ProviderTimeoutError and err.billable and len(setup.server.bill) == 1


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(status=429, retry_after=2.5), RateLimitError),
        (Fault(status=500), ServerError),
        (Fault(status=503), OverloadedError),
        (Fault(status=529), OverloadedError),
    ],
)
async def test_error_statuses_are_not_billed_nor_billable(setup: Setup, fault: Fault, kind: type) -> None:
    setup.server.script(fault)
    err = await setup.fail()
    assert type(err) is kind and not err.billable and err.retryable
    assert setup.server.bill == [] and setup.server.exchanges[0].request_id == err.request_id
    if isinstance(err, RateLimitError):
        assert err.retry_after == 2.5


async def test_an_unpriced_model_is_not_found_and_not_billed(setup: Setup) -> None:
    with pytest.raises(ProviderError) as caught:
        await setup.call(model="gpt-9")
    assert (caught.value.status_code, caught.value.billable) == (404, False) and setup.server.bill == []


async def test_faults_are_taken_in_order_then_decided_per_call(setup: Setup) -> None:
    setup.server.script(Fault(status=500))
    setup.server.decide = lambda call: Fault(serve=PRICEY[call.provider]) if call.number % 2 == 0 else None
    with pytest.raises(ServerError):
        await setup.call()
    served = [(await setup.call()).model for _ in range(3)]  # type: ignore[attr-defined]
    assert served == [PRICEY[setup.wire], CHEAP[setup.wire], PRICEY[setup.wire]]
    assert [e.outcome for e in setup.server.exchanges] == ["status:500", "ok", "ok", "ok"]


def test_latency_ranges_are_drawn_from_the_seed() -> None:
    def delays(seed: int) -> list[float]:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
        with BillingServer(PRICES, latency=(0.0, 0.002), seed=seed) as srv:
            return [srv.plan("openai", body).latency for _ in range(5)]

    assert delays(1) == delays(1) != delays(2)
    assert all(0.0 <= d <= 0.002 for d in delays(3))


def test_input_tokens_never_exceed_the_prompt_bytes() -> None:
    content = [{"type": "text", "text": "héllo"}, {"type": "tool_result", "tool_use_id": "t", "content": "ok"}]
    body = {"model": "claude-haiku-4-5", "system": [{"type": "text", "text": "sys"}], "max_tokens": 5,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip
    with BillingServer(PRICES, input_tokens=lambda n: 2 * n + 10) as greedy:
        plan = greedy.plan("anthropic", body)
    assert greedy.bill[0].input_tokens == len(b"sys" + "héllo".encode() + b"ok") == 11
    assert plan.exchange is not None and plan.exchange.billed


async def test_a_forced_tool_is_answered_with_that_tool(billing: BillingServer) -> None:
    server = billing
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.anthropic_url, timeout=2)
    server.reply = lambda call: '{"answer": 42}'
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    request = ModelRequest(model="claude-haiku-4-5", messages=(Message(role="user", content="q"),), max_tokens=20,
                           json_schema=schema)  # fmt: skip
    try:
        response = await provider.complete(request)
    finally:
        await provider.aclose()
    assert response.text == '{"answer": 42}'


async def test_concurrent_calls_with_mixed_faults_are_each_billed_at_most_once(setup: Setup) -> None:
    faults = [Fault(), Fault(drop="after_request"), Fault(drop="before_request"), Fault(status=429),
              Fault(serve=PRICEY[setup.wire]), Fault(omit_usage=True), Fault(drop="mid_body")]  # fmt: skip
    setup.server.latency = (0.0, 0.02)
    setup.server.decide = lambda call: faults[call.number % len(faults)]
    # No fault here is a timeout: on a loaded machine 28 calls at once may take longer than the 0.5 s the
    # other tests allow, and a call that timed out would be counted as a different failure.
    patient = _provider(setup.wire, setup.server, timeout=30)
    setup = Setup(setup.wire, setup.server, patient)
    responses: list[object] = []
    failures: list[ProviderError] = []

    async def one() -> None:
        try:
            responses.append(await setup.call())
        except ProviderError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(28):
            tg.start_soon(one)
    await patient.aclose()  # type: ignore[attr-defined]
    exchanges, bill = setup.server.exchanges, setup.server.bill
    assert len(exchanges) == 28 and len(bill) == sum(e.billed for e in exchanges) == 20
    by_id = {line.request_id: line for line in bill}
    for response in responses:  # every answer the client saw was billed, at the usage it reported
        line = by_id[response.request_id]  # type: ignore[attr-defined]
        assert (line.served_model, line.output_tokens) == (response.model, response.usage.output_tokens)  # type: ignore[attr-defined]
    assert len(responses) == 8 and len(failures) == 20
    # What the client may not count as billed was never billed by the server.
    assert sum(not f.billable for f in failures) == 4 == sum(e.outcome == "status:429" for e in exchanges)
