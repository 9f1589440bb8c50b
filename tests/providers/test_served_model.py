"""Each provider reports the model that served a call and the provider's request id for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from paymaster.providers import (
    AnthropicProvider,
    Message,
    ModelRequest,
    ModelResponse,
    OpenAIProvider,
    Provider,
    ScriptedProvider,
)

from .loopback import ANTHROPIC_KEY, OPENAI_KEY, LoopbackServer, Reply, chat_completion, claude_message

pytestmark = pytest.mark.anyio


def ask(model: str) -> ModelRequest:
    return ModelRequest(model=model, messages=(Message(role="user", content="Hi"),), max_tokens=16)


# (provider factory, body builder, request-id header, a model to ask for)
Wire = tuple[Callable[[str], Provider], Callable[..., dict[str, Any]], str, str]
WIRES: dict[str, Wire] = {
    "openai": (
        lambda url: OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{url}/v1", timeout=2),
        chat_completion,
        "x-request-id",
        "gpt-4o-mini",
    ),
    "anthropic": (
        lambda url: AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=url, timeout=2),
        claude_message,
        "request-id",
        "claude-haiku-4-5",
    ),
}


@pytest.fixture(params=sorted(WIRES))
async def wire(request: pytest.FixtureRequest, server: LoopbackServer) -> AsyncIterator[tuple[Provider, Wire]]:
    spec = WIRES[request.param]
    provider = spec[0](server.url)
    yield provider, spec
    await provider.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("served", ["gpt-4o", "claude-sonnet-4-6", "gpt-4o-mini-2024-07-18"])
async def test_the_response_names_the_model_that_served_not_the_one_asked_for(
    wire: tuple[Provider, Wire], server: LoopbackServer, served: str
) -> None:
    provider, (_, body, _, asked) = wire
    server.reply(Reply(200, body(model=served)))
    response = await provider.complete(ask(asked))
    assert response.model == served != asked


@pytest.mark.parametrize("named", [None, "", "  "])
async def test_a_body_that_names_no_model_falls_back_to_the_requested_one(
    wire: tuple[Provider, Wire], server: LoopbackServer, named: str | None
) -> None:
    provider, (_, body, _, asked) = wire
    data = body(model="placeholder")
    if named is None:
        del data["model"]
    else:
        data["model"] = named
    server.reply(Reply(200, data))
    assert (await provider.complete(ask(asked))).model == asked


async def test_the_request_id_comes_from_the_providers_header(
    wire: tuple[Provider, Wire], server: LoopbackServer
) -> None:
    provider, (_, body, header, asked) = wire
    server.reply(Reply(200, body(), {header: "req_011CSHoEeqs5C35K2UUqR7Fy"}), Reply(200, body()))
    assert (await provider.complete(ask(asked))).request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
    assert (await provider.complete(ask(asked))).request_id is None  # no header: unknown, not invented


async def test_the_other_providers_request_id_header_is_not_taken(
    wire: tuple[Provider, Wire], server: LoopbackServer
) -> None:
    provider, (_, body, header, asked) = wire
    other = "request-id" if header == "x-request-id" else "x-request-id"
    server.reply(Reply(200, body(), {other: "req_not_ours"}))
    assert (await provider.complete(ask(asked))).request_id is None


async def test_the_scripted_provider_serves_what_it_is_told_and_numbers_its_requests() -> None:
    provider = ScriptedProvider(["a", "b", "c"], name="fake", serves={"gpt-4o-mini": "gpt-4o"})
    swapped = await provider.complete(ask("gpt-4o-mini"))
    kept = await provider.complete(ask("claude-haiku-4-5"))
    assert (swapped.model, swapped.request_id) == ("gpt-4o", "fake-1")
    assert (kept.model, kept.request_id) == ("claude-haiku-4-5", "fake-2")
    given = ModelResponse(text="x", usage=swapped.usage, model="as-scripted")
    provider = ScriptedProvider([given], serves={"gpt-4o-mini": "gpt-4o"})
    assert (await provider.complete(ask("gpt-4o-mini"))).model == "as-scripted"  # a full response is kept as is


async def test_a_scripted_provider_told_not_to_record_keeps_no_calls_and_still_numbers_its_requests() -> None:
    provider = ScriptedProvider(["a", "b"], name="fake", record=False)  # a long run: nothing piles up
    first, second = await provider.complete(ask("gpt-4o")), await provider.complete(ask("gpt-4o"))
    assert (first.text, second.text) == ("a", "b")
    assert (first.request_id, second.request_id) == ("fake-1", "fake-2")
    assert provider.calls == []
