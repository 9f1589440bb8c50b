"""OpenAIProvider against a loopback server speaking the Chat Completions wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from paymaster.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionDroppedError,
    ConnectionFailedError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from paymaster.providers import Message, ModelRequest, OpenAIProvider, Provider, ToolCall, ToolSpec, Usage
from paymaster.providers._openai import is_strict_schema

from .loopback import OPENAI_KEY, LoopbackServer, Reply, chat_completion, openai_error

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def ask(text: str = "Hi", **fields: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=(Message(role="user", content=text),), max_tokens=256, **fields)


@pytest.fixture
async def gpt(server: LoopbackServer) -> AsyncIterator[OpenAIProvider]:
    # The SDK's own base-URL variable pairs with its key variable, as for api.openai.com itself.
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", timeout=2)
    yield provider
    await provider.aclose()


async def test_cached_tokens_are_a_subset_of_the_prompt(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    usage = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    server.reply(Reply(200, chat_completion(usage=usage)))
    response = await gpt.complete(ask())
    # prompt_tokens already includes the cached tokens: nothing is added twice.
    assert response.usage == Usage(input_tokens=2006, output_tokens=300, cache_read_tokens=1920)
    assert (response.text, response.finish_reason, response.model) == ("Hello!", "stop", MODEL)


async def test_cache_writes_where_reported_are_a_subset_too(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    usage = {
        "prompt_tokens": 3000,
        "completion_tokens": 10,
        "total_tokens": 3010,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500},
    }
    server.reply(Reply(200, chat_completion(usage=usage)))
    assert (await gpt.complete(ask())).usage == Usage(
        input_tokens=3000, output_tokens=10, cache_read_tokens=1000, cache_write_tokens=1500
    )


async def test_usage_without_details_counts_plain_tokens(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    # llama.cpp and Ollama send only the three totals.
    server.reply(Reply(200, chat_completion(usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})))
    assert (await gpt.complete(ask())).usage == Usage(input_tokens=9, output_tokens=4)


async def test_request_is_the_chat_completions_wire_format(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    server.reply(Reply(200, chat_completion()))
    await gpt.complete(ask("What is 2+2?", system="You are terse."))
    (sent,) = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    body = sent.json()
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    # A server named by base_url gets max_tokens, which every compatible server honours.
    assert body["max_tokens"] == 256 and "max_completion_tokens" not in body
    assert not {"tools", "response_format", "tool_choice"} & set(body)
    assert "cache_control" not in sent.body.decode()  # OpenAI caches prefixes by itself


async def test_openai_itself_gets_max_completion_tokens(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    provider = OpenAIProvider()
    explicit = OpenAIProvider(base_url=f"{server.url}/v1", api_key="k", max_tokens_param="max_completion_tokens")
    server.reply(Reply(200, chat_completion()), Reply(200, chat_completion()))
    for p in (provider, explicit):
        await p.complete(ask())
        await p.aclose()
    for sent in server.received:
        body = sent.json()
        assert body["max_completion_tokens"] == 256 and "max_tokens" not in body


async def test_tool_calls_and_results_round_trip(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        ],
    }
    server.reply(Reply(200, chat_completion(message, finish_reason="tool_calls")), Reply(200, chat_completion()))
    first = await gpt.complete(ask("Weather in Paris and Oslo?", tools=(WEATHER,)))
    assert first.tool_calls == (
        ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="call_b", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert (first.text, first.finish_reason) == ("", "tool_calls")
    assert server.received[0].json()["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]

    history = (
        Message(role="user", content="Weather in Paris and Oslo?"),
        Message(role="assistant", tool_calls=first.tool_calls),
        Message(role="tool", tool_call_id="call_a", content="18C"),
        Message(role="tool", tool_call_id="call_b", content="4C"),
    )
    await gpt.complete(ModelRequest(model=MODEL, messages=history, max_tokens=64, tools=(WEATHER,)))
    assert server.received[1].json()["messages"] == [
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "4C"},
    ]


async def test_tool_calls_without_ids_or_arguments_still_parse(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    # Some compatible servers leave out the id, or send "" for a call without arguments.
    message = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_time", "arguments": ""}}]}
    server.reply(Reply(200, chat_completion(message, finish_reason="tool_calls")))
    response = await gpt.complete(ask())
    assert response.tool_calls == (ToolCall(id="call_0", name="get_time", arguments={}),)


async def test_structured_output_is_response_format_json_schema(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    content = '{"answer": 42}'
    server.reply(
        Reply(200, chat_completion({"role": "assistant", "content": content})),
        Reply(200, chat_completion({"role": "assistant", "content": content})),
    )
    response = await gpt.complete(ask("6 times 7?", json_schema=ANSWER_SCHEMA))
    assert json.loads(response.text) == {"answer": 42}
    assert server.received[0].json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": ANSWER_SCHEMA, "strict": True},
    }
    loose = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    await gpt.complete(ask(json_schema=loose))
    assert server.received[1].json()["response_format"]["json_schema"]["strict"] is False


async def test_structured_output_as_json_object_with_schema_for_llama_cpp_python(server: LoopbackServer) -> None:
    provider = OpenAIProvider(name="local", base_url=f"{server.url}/v1", structured_output="json_object")
    server.reply(Reply(200, chat_completion({"role": "assistant", "content": '{"answer": 42}'})))
    try:
        response = await provider.complete(ask(json_schema=ANSWER_SCHEMA))
    finally:
        await provider.aclose()
    assert json.loads(response.text) == {"answer": 42}
    assert server.received[0].json()["response_format"] == {"type": "json_object", "schema": ANSWER_SCHEMA}


def test_strict_schema_detection_follows_openais_rules() -> None:
    closed = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert is_strict_schema(closed)
    assert not is_strict_schema({**closed, "required": []})
    assert not is_strict_schema({k: v for k, v in closed.items() if k != "additionalProperties"})
    nested_open = {**closed, "properties": {"a": {"type": "object", "properties": {}}}}
    assert not is_strict_schema(nested_open)
    in_array = {**closed, "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"x": {}}}}}}
    assert not is_strict_schema(in_array)
    in_defs = {**closed, "$defs": {"D": {"type": "object", "properties": {"x": {}}, "required": ["x"]}}}
    assert not is_strict_schema(in_defs)
    assert is_strict_schema({"type": "string"})


async def test_a_refusal_is_the_text(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    server.reply(Reply(200, chat_completion(message)))
    response = await gpt.complete(ask(json_schema=ANSWER_SCHEMA))
    assert (response.text, response.finish_reason) == ("I can't help with that.", "refusal")


ERRORS = [
    pytest.param(Reply(429, openai_error("requests", "Rate limit reached for gpt-4o", "rate_limit_exceeded"),
                       {"retry-after": "20"}), RateLimitError, 429, id="429"),
    pytest.param(Reply(429, openai_error("insufficient_quota", "You exceeded your current quota",
                                         "insufficient_quota")), BadRequestError, 429, id="429-quota"),
    pytest.param(Reply(503, openai_error("server_error", "The engine is currently overloaded")), OverloadedError, 503,
                 id="503"),
    pytest.param(Reply(500, openai_error("server_error", "The server had an error while processing your request.")),
                 ServerError, 500, id="500"),
    pytest.param(Reply(502, openai_error("server_error", "Bad gateway.")), ServerError, 502, id="502"),
    pytest.param(Reply(400, openai_error("invalid_request_error", "Invalid 'messages': empty array.",
                                         "empty_array")), BadRequestError, 400, id="400"),
    pytest.param(Reply(404, openai_error("invalid_request_error", "The model `gpt-9` does not exist",
                                         "model_not_found")), BadRequestError, 404, id="404"),
    pytest.param(Reply(401, openai_error("invalid_request_error", "Incorrect API key provided: sk-proj-****CDEF.",
                                         "invalid_api_key")), AuthenticationError, 401, id="401"),
    pytest.param(Reply(403, openai_error("invalid_request_error", "Country, region, or territory not supported",
                                         "unsupported_country_region_territory")), AuthenticationError, 403,
                 id="403"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "kind", "status"), ERRORS)
async def test_http_errors_are_translated(
    gpt: OpenAIProvider, server: LoopbackServer, reply: Reply, kind: type[ProviderError], status: int
) -> None:
    server.reply(reply)
    with pytest.raises(kind) as caught:
        await gpt.complete(ask())
    err = caught.value
    assert type(err) is kind
    assert (err.status_code, err.provider) == (status, "openai")
    assert isinstance(err.__cause__, openai.APIStatusError)
    assert str(err).startswith(f"openai: HTTP {status} {reply.body['error']['type']}: {reply.body['error']['message']}")
    # Out of quota is a 429 that waiting does not fix.
    assert err.retryable == (status >= 429 and kind is not BadRequestError)
    assert len(server.received) == 1  # the SDK's own retries are off
    if isinstance(err, RateLimitError):
        assert err.retry_after == 20.0


async def test_a_timeout_is_translated(server: LoopbackServer) -> None:
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", timeout=0.3)
    server.reply(Reply(200, chat_completion(), delay=10))
    try:
        with pytest.raises(ProviderTimeoutError) as caught:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert caught.value.retryable and isinstance(caught.value.__cause__, openai.APITimeoutError)


async def test_a_refused_connection_is_translated(refused_url: str) -> None:
    provider = OpenAIProvider(name="local", base_url=f"{refused_url}/v1", timeout=2)
    try:
        with pytest.raises(ConnectionFailedError, match="local: connection failed") as caught:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert caught.value.retryable and caught.value.provider == "local"


async def test_a_dropped_connection_is_translated(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    server.reply(Reply(drop=True))
    with pytest.raises(ConnectionDroppedError):
        await gpt.complete(ask())


def _with_call(arguments: str) -> dict[str, Any]:
    call = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return chat_completion({"role": "assistant", "content": None, "tool_calls": [call]}, finish_reason="tool_calls")


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(200, b'{"id": "chatcmpl-1", "choices": [{"mess'), id="truncated-json"),
        pytest.param(Reply(200, "<html>Bad gateway</html>", {"content-type": "text/html"}), id="html"),
        pytest.param(Reply(200, {"id": "chatcmpl-1", "object": "chat.completion"}), id="no-choices"),
        pytest.param(Reply(200, {**chat_completion(), "choices": []}), id="empty-choices"),
        pytest.param(Reply(200, {**chat_completion(), "usage": None}), id="no-usage"),
        pytest.param(Reply(200, chat_completion(usage={"prompt_tokens": -1, "completion_tokens": 3})), id="negative"),
        pytest.param(Reply(200, chat_completion(usage={"completion_tokens": 3})), id="missing-prompt-count"),
        pytest.param(Reply(200, _with_call('{"city": ')), id="tool-arguments-not-json"),
        pytest.param(Reply(200, _with_call('["Paris"]')), id="tool-arguments-not-an-object"),
    ],
)
async def test_malformed_bodies_are_translated(gpt: OpenAIProvider, server: LoopbackServer, reply: Reply) -> None:
    server.reply(reply)
    with pytest.raises(MalformedResponseError) as caught:
        await gpt.complete(ask())
    assert not caught.value.retryable and caught.value.provider == "openai"


async def test_the_key_is_sent_only_in_the_auth_header(gpt: OpenAIProvider, server: LoopbackServer) -> None:
    server.reply(Reply(200, chat_completion()))
    await gpt.complete(ask(system="sys", tools=(WEATHER,)))
    (sent,) = server.received
    assert [name for name, value in sent.headers.items() if OPENAI_KEY in value] == ["authorization"]
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert OPENAI_KEY not in sent.body.decode() and OPENAI_KEY not in sent.path
    assert OPENAI_KEY not in repr(gpt)


async def test_a_missing_key_for_openai_is_a_clear_error_at_the_first_call() -> None:
    provider = OpenAIProvider()  # constructing needs no key
    assert isinstance(provider, Provider)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await provider.complete(ask())


async def test_a_local_server_needs_no_key_and_never_gets_the_openai_one(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    local = OpenAIProvider(name="local", base_url=f"{server.url}/v1")
    server.reply(Reply(200, chat_completion(model="gemma-3-270m")))
    try:
        response = await local.complete(
            ModelRequest(model="gemma-3-270m", messages=(Message(role="user", content="Hi"),), max_tokens=16)
        )
    finally:
        await local.aclose()
    assert response.model == "gemma-3-270m" and local.name == "local"
    assert OPENAI_KEY not in " ".join(server.received[0].headers.values())


async def test_a_key_for_another_compatible_server_comes_from_its_own_variable(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-secret-key-123456")
    provider = OpenAIProvider(name="together", base_url=f"{server.url}/v1", api_key_env="TOGETHER_API_KEY")
    server.reply(Reply(200, chat_completion()))
    try:
        await provider.complete(ask())
    finally:
        await provider.aclose()
    assert server.received[0].headers["authorization"] == "Bearer tg-secret-key-123456"
    monkeypatch.delenv("TOGETHER_API_KEY")
    with pytest.raises(ConfigurationError, match="TOGETHER_API_KEY"):
        await OpenAIProvider(name="together", base_url=f"{server.url}/v1", api_key_env="TOGETHER_API_KEY").complete(
            ask()
        )


async def test_a_given_client_is_used_with_its_retries_off(server: LoopbackServer) -> None:
    client = openai.AsyncOpenAI(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", max_retries=5, timeout=2)
    provider = OpenAIProvider(client=client)
    server.reply(Reply(500, openai_error("server_error", "boom")), Reply(200, chat_completion()))
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(server.received) == 1
    await provider.aclose()  # leaves the caller's client open
    assert (await provider.complete(ask())).text == "Hello!"
    await client.close()
