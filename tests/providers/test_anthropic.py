"""AnthropicProvider against a loopback server speaking the Messages API wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
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
from paymaster.providers import AnthropicProvider, Message, ModelRequest, Provider, ToolCall, ToolSpec, Usage

from .loopback import ANTHROPIC_KEY, LoopbackServer, Reply, claude_error, claude_message

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-6"
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
async def claude(server: LoopbackServer) -> AsyncIterator[AnthropicProvider]:
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url, timeout=2)
    yield provider
    await provider.aclose()


async def test_usage_adds_cache_reads_and_writes_into_the_whole_prompt(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    usage = {
        "input_tokens": 50,
        "output_tokens": 30,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
    }
    server.reply(Reply(200, claude_message(usage=usage)))
    response = await claude.complete(ask(system="Be brief."))
    # Anthropic's input_tokens excludes the cached parts; Usage.input_tokens is the whole prompt.
    assert response.usage == Usage(input_tokens=3050, output_tokens=30, cache_read_tokens=2000, cache_write_tokens=1000)
    assert (response.text, response.finish_reason, response.model) == ("Hello!", "stop", MODEL)


async def test_usage_without_cache_fields_counts_plain_tokens(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    server.reply(Reply(200, claude_message(usage={"input_tokens": 7, "output_tokens": 3})))
    assert (await claude.complete(ask())).usage == Usage(input_tokens=7, output_tokens=3)


async def test_request_is_the_messages_wire_format_with_the_system_prompt_marked_for_caching(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    server.reply(Reply(200, claude_message()))
    await claude.complete(ask("What is 2+2?", system="You are terse."))
    (sent,) = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert "anthropic-version" in sent.headers
    body = sent.json()
    assert body["model"] == MODEL and body["max_tokens"] == 256
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]
    assert "tools" not in body and "tool_choice" not in body


async def test_without_a_system_prompt_the_last_tool_carries_the_cache_mark(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    server.reply(Reply(200, claude_message()))
    await claude.complete(ask(tools=(WEATHER, ToolSpec(name="get_time"))))
    body = server.received[0].json()
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert "description" not in body["tools"][1]  # an empty one is left out
    assert body["tools"][0] == {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": WEATHER.parameters,
    }
    assert body["tools"][1]["cache_control"] == {"type": "ephemeral"}
    assert "system" not in body


async def test_cache_prefix_off_marks_nothing(claude: AnthropicProvider, server: LoopbackServer) -> None:
    server.reply(Reply(200, claude_message()))
    await claude.complete(ask(system="S", tools=(WEATHER,), cache_prefix=False))
    assert "cache_control" not in server.received[0].body.decode()


async def test_tool_calls_and_results_round_trip(claude: AnthropicProvider, server: LoopbackServer) -> None:
    reply = claude_message(
        [
            {"type": "text", "text": "Let me check both."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        stop_reason="tool_use",
    )
    server.reply(Reply(200, reply), Reply(200, claude_message()))
    first = await claude.complete(ask("Weather in Paris and Oslo?", tools=(WEATHER,)))
    assert first.tool_calls == (
        ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_02", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert (first.text, first.finish_reason) == ("Let me check both.", "tool_calls")

    history = (
        Message(role="system", content="Answer in French."),
        Message(role="user", content="Weather in Paris and Oslo?"),
        Message(role="assistant", content=first.text, tool_calls=first.tool_calls),
        Message(role="tool", tool_call_id="toolu_01", content="18C"),
        Message(role="tool", tool_call_id="toolu_02", content="4C"),
        Message(role="user", content="Thanks."),
    )
    await claude.complete(ModelRequest(model=MODEL, messages=history, max_tokens=64, system="Be brief."))
    body = server.received[1].json()
    assert body["system"][0]["text"] == "Be brief.\n\nAnswer in French."
    # Tool results and the next user text share one user turn, as the API requires.
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check both."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "4C"},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]


async def test_a_tool_result_without_its_call_id_is_refused_before_sending(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    request = ModelRequest(model=MODEL, messages=(Message(role="tool", content="18C"),), max_tokens=8)
    with pytest.raises(BadRequestError, match="tool_call_id"):
        await claude.complete(request)
    assert server.received == []


async def test_structured_output_is_a_forced_tool(claude: AnthropicProvider, server: LoopbackServer) -> None:
    answer = {"type": "tool_use", "id": "toolu_9", "name": "structured_output", "input": {"answer": 42}}
    server.reply(Reply(200, claude_message([answer], stop_reason="tool_use")))
    response = await claude.complete(ask("6 times 7?", json_schema=ANSWER_SCHEMA))
    assert json.loads(response.text) == {"answer": 42}
    assert (response.tool_calls, response.finish_reason) == ((), "stop")
    body = server.received[0].json()
    assert body["tools"][-1]["name"] == "structured_output"
    assert body["tools"][-1]["input_schema"] == ANSWER_SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "structured_output"}


async def test_structured_output_beside_tools_lets_the_model_call_them_first(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}}
    server.reply(Reply(200, claude_message([call], stop_reason="tool_use")))
    response = await claude.complete(ask(tools=(WEATHER,), json_schema=ANSWER_SCHEMA))
    assert server.received[0].json()["tool_choice"] == {"type": "any"}
    assert [c.name for c in response.tool_calls] == ["get_weather"]
    assert response.finish_reason == "tool_calls"


async def test_a_non_object_schema_is_wrapped_for_the_tool_and_unwrapped_in_the_answer(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    answer = {"type": "tool_use", "id": "t", "name": "structured_output", "input": {"value": ["a", "b"]}}
    server.reply(Reply(200, claude_message([answer], stop_reason="tool_use")))
    response = await claude.complete(ask(json_schema=schema))
    assert json.loads(response.text) == ["a", "b"]
    assert server.received[0].json()["tools"][0]["input_schema"]["properties"]["value"] == schema


async def test_native_structured_output_uses_output_config(server: LoopbackServer) -> None:
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url, structured_output="native")
    server.reply(Reply(200, claude_message([{"type": "text", "text": '{"answer": 42}'}])))
    try:
        response = await provider.complete(ask(json_schema=ANSWER_SCHEMA))
    finally:
        await provider.aclose()
    assert json.loads(response.text) == {"answer": 42}
    body = server.received[0].json()
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}}
    assert "tools" not in body


async def test_a_tool_named_like_the_output_tool_is_a_configuration_error(claude: AnthropicProvider) -> None:
    clash = ToolSpec(name="structured_output")
    with pytest.raises(ConfigurationError, match="structured_output"):
        await claude.complete(ask(tools=(clash,), json_schema=ANSWER_SCHEMA))


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "refusal")],
)
async def test_stop_reasons_map_to_finish_reasons(
    claude: AnthropicProvider, server: LoopbackServer, stop_reason: str, finish: str
) -> None:
    server.reply(Reply(200, claude_message(stop_reason=stop_reason)))
    assert (await claude.complete(ask())).finish_reason == finish


def _http_date(seconds_ahead: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_ahead), usegmt=True)


ERRORS = [
    pytest.param(Reply(429, claude_error("rate_limit_error", "Slow down"), {"retry-after": "7"}), RateLimitError, 429,
                 id="429-retry-after-seconds"),
    pytest.param(Reply(429, claude_error("rate_limit_error", "Slow down"), {"retry-after-ms": "1500"}),
                 RateLimitError, 429, id="429-retry-after-ms"),
    pytest.param(Reply(529, claude_error("overloaded_error", "Overloaded")), OverloadedError, 529, id="529"),
    pytest.param(Reply(503, claude_error("api_error", "Service unavailable")), OverloadedError, 503, id="503"),
    pytest.param(Reply(500, claude_error("api_error", "Internal server error")), ServerError, 500, id="500"),
    pytest.param(Reply(400, claude_error("invalid_request_error", "max_tokens: too big")), BadRequestError, 400,
                 id="400"),
    pytest.param(Reply(413, claude_error("request_too_large", "Request exceeds the maximum size")), BadRequestError,
                 413, id="413"),
    pytest.param(Reply(401, claude_error("authentication_error", "invalid x-api-key")), AuthenticationError, 401,
                 id="401"),
    pytest.param(Reply(403, claude_error("permission_error", "no access to model")), AuthenticationError, 403,
                 id="403"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "kind", "status"), ERRORS)
async def test_http_errors_are_translated(
    claude: AnthropicProvider, server: LoopbackServer, reply: Reply, kind: type[ProviderError], status: int
) -> None:
    server.reply(reply)
    with pytest.raises(kind) as caught:
        await claude.complete(ask())
    err = caught.value
    assert type(err) is kind
    assert (err.status_code, err.provider) == (status, "anthropic")
    assert isinstance(err.__cause__, anthropic.APIStatusError)
    _kind, message = reply.body["error"]["type"], reply.body["error"]["message"]
    assert str(err).startswith(f"anthropic: HTTP {status} {_kind}: {message}")
    assert err.retryable == (status >= 429)
    assert len(server.received) == 1  # the SDK's own retries are off


async def test_retry_after_seconds_and_milliseconds_reach_the_error(
    claude: AnthropicProvider, server: LoopbackServer
) -> None:
    server.reply(
        Reply(429, claude_error("rate_limit_error", "x"), {"retry-after": "7"}),
        Reply(429, claude_error("rate_limit_error", "x"), {"retry-after-ms": "1500", "retry-after": "2"}),
        Reply(429, claude_error("rate_limit_error", "x"), {"retry-after": _http_date(30)}),
        Reply(429, claude_error("rate_limit_error", "x")),
    )
    waits = []
    for _ in range(4):
        with pytest.raises(RateLimitError) as caught:
            await claude.complete(ask())
        waits.append(caught.value.retry_after)
    assert waits[:2] == [7.0, 1.5]
    assert waits[2] is not None and 25 <= waits[2] <= 30
    assert waits[3] is None


async def test_auth_errors_say_where_the_key_came_from(claude: AnthropicProvider, server: LoopbackServer) -> None:
    server.reply(Reply(401, claude_error("authentication_error", "invalid x-api-key")))
    with pytest.raises(AuthenticationError, match=r"check the api_key passed to AnthropicProvider"):
        await claude.complete(ask())


async def test_a_timeout_is_translated(server: LoopbackServer) -> None:
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url, timeout=0.3)
    server.reply(Reply(200, claude_message(), delay=10))
    try:
        with pytest.raises(ProviderTimeoutError) as caught:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert caught.value.retryable and isinstance(caught.value.__cause__, anthropic.APITimeoutError)


async def test_a_refused_connection_is_translated(refused_url: str) -> None:
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=refused_url, timeout=2)
    try:
        with pytest.raises(ConnectionFailedError, match="anthropic: connection failed") as caught:
            await provider.complete(ask())
    finally:
        await provider.aclose()
    assert caught.value.retryable


async def test_a_dropped_connection_is_translated(claude: AnthropicProvider, server: LoopbackServer) -> None:
    server.reply(Reply(drop=True))
    with pytest.raises(ConnectionDroppedError):
        await claude.complete(ask())


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(200, b'{"id": "msg_1", "content": [{"type": "te'), id="truncated-json"),
        pytest.param(Reply(200, "<html>Bad gateway</html>", {"content-type": "text/html"}), id="html"),
        pytest.param(Reply(200, {"id": "msg_1", "type": "message"}), id="no-content"),
        pytest.param(Reply(200, {**claude_message(), "usage": None}), id="no-usage"),
        pytest.param(Reply(200, claude_message(usage={"input_tokens": "12", "output_tokens": 3})), id="bad-count"),
        pytest.param(Reply(200, claude_message(usage={"output_tokens": 3})), id="missing-input-count"),
        pytest.param(Reply(200, claude_message([{"type": "tool_use", "id": "t", "input": {}}])), id="nameless-tool"),
    ],
)
async def test_malformed_bodies_are_translated(claude: AnthropicProvider, server: LoopbackServer, reply: Reply) -> None:
    server.reply(reply)
    with pytest.raises(MalformedResponseError) as caught:
        await claude.complete(ask())
    assert not caught.value.retryable and caught.value.provider == "anthropic"


async def test_the_key_is_sent_only_in_the_auth_header(claude: AnthropicProvider, server: LoopbackServer) -> None:
    server.reply(Reply(200, claude_message()))
    await claude.complete(ask(system="sys", tools=(WEATHER,)))
    (sent,) = server.received
    carrying = [name for name, value in sent.headers.items() if ANTHROPIC_KEY in value]
    assert carrying in (["authorization"], ["x-api-key"])
    assert ANTHROPIC_KEY not in sent.body.decode() and ANTHROPIC_KEY not in sent.path
    assert ANTHROPIC_KEY not in repr(claude)


async def test_a_missing_key_is_a_clear_error_at_the_first_call() -> None:
    provider = AnthropicProvider()  # constructing needs no key
    assert isinstance(provider, Provider)
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        await provider.complete(ask())
    named = AnthropicProvider(api_key_env="MY_CLAUDE_KEY")
    with pytest.raises(ConfigurationError, match="MY_CLAUDE_KEY"):
        await named.complete(ask())


async def test_the_env_key_goes_only_to_the_default_or_env_configured_api(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    server.reply(*(Reply(200, claude_message()) for _ in range(3)))
    # A base URL given in code: the environment's key is not sent there unless asked for.
    by_url = AnthropicProvider(base_url=server.url)
    asked = AnthropicProvider(base_url=server.url, api_key_env="ANTHROPIC_API_KEY")
    # The SDK's own base-URL variable pairs with the SDK's own key variable.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    by_env = AnthropicProvider()
    for provider in (by_url, asked, by_env):
        await provider.complete(ask())
        await provider.aclose()
    sent = [ANTHROPIC_KEY in " ".join(r.headers.values()) for r in server.received]
    assert sent == [False, True, True]


async def test_a_given_client_is_used_with_its_retries_off(server: LoopbackServer) -> None:
    client = anthropic.AsyncAnthropic(api_key=ANTHROPIC_KEY, base_url=server.url, max_retries=5, timeout=2)
    provider = AnthropicProvider(client=client, name="claude-proxy")
    server.reply(Reply(500, claude_error("api_error", "boom")), Reply(200, claude_message()))
    with pytest.raises(ServerError, match=r"^claude-proxy: HTTP 500"):
        await provider.complete(ask())
    assert len(server.received) == 1
    await provider.aclose()  # leaves the caller's client open
    assert (await provider.complete(ask())).text == "Hello!"
    await client.close()
