"""No API key in any exception message, repr, traceback or log record, for every failure."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from paymaster.errors import ProviderError
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider, Provider

from .loopback import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    LoopbackServer,
    Received,
    Reply,
    chat_completion,
    claude_error,
    claude_message,
    openai_error,
)

pytestmark = pytest.mark.anyio

SDK_LOGGERS = ("anthropic", "openai", "httpx2", "httpcore2", "paymaster")


def echoing(status: int, body: Callable[[str], dict[str, Any]]) -> Callable[[Received], Reply]:
    """A reply whose error body quotes the request's credentials back, as a careless proxy might."""

    def respond(request: Received) -> Reply:
        credentials = " ".join(v for k, v in request.headers.items() if k in ("authorization", "x-api-key"))
        return Reply(status, body(f"rejected credentials {credentials!r}; raw key {credentials.split()[-1]}"))

    return respond


def cases(error: Callable[[str, str], dict[str, Any]], ok: Callable[..., dict[str, Any]]) -> list[Any]:
    return [
        Reply(429, error("rate_limit_error", "slow down"), {"retry-after": "3"}),
        Reply(529, error("overloaded_error", "Overloaded")),
        Reply(503, error("api_error", "unavailable")),
        Reply(500, error("api_error", "boom")),
        Reply(400, error("invalid_request_error", "bad")),
        echoing(401, lambda text: error("authentication_error", text)),
        echoing(403, lambda text: error("permission_error", text)),
        echoing(500, lambda text: error("api_error", text)),
        echoing(200, lambda text: error("api_error", text)),  # an error where a result should be
        Reply(200, b"{not json"),
        Reply(200, {"no": "usage"}),
        Reply(drop=True),
        Reply(200, ok(), delay=10),  # times out
    ]


ANTHROPIC_CASES = cases(claude_error, claude_message)
OPENAI_CASES = cases(lambda kind, message: openai_error(kind, message), chat_completion)


def _texts(exc: BaseException, caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    cause: BaseException | None = exc
    while cause is not None:  # every link of the chain, with whatever the SDK stored on it
        texts += [str(cause), repr(cause), repr(getattr(cause, "body", None)), repr(getattr(cause, "message", None))]
        cause = cause.__cause__
    texts += [formatter.format(record) for record in caplog.records]
    return texts


async def _check(
    provider: Provider, key: str, server: LoopbackServer, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for name in SDK_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    server.reply(reply)
    request = ModelRequest(model="claude-haiku-4-5", messages=(Message(role="user", content="Hi"),), max_tokens=8)
    with pytest.raises(ProviderError) as caught:
        await provider.complete(request)
    assert caplog.records, "the SDK loggers were expected to log at DEBUG"
    for text in _texts(caught.value, caplog):
        assert key not in text
        assert key[:20] not in text  # nor a recognisable part of it
    assert key not in repr(provider)


@pytest.mark.parametrize("reply", ANTHROPIC_CASES)
async def test_anthropic_errors_never_show_the_key(
    server: LoopbackServer, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url, timeout=0.5)
    try:
        await _check(provider, ANTHROPIC_KEY, server, reply, caplog)
    finally:
        await provider.aclose()


@pytest.mark.parametrize("reply", OPENAI_CASES)
async def test_openai_errors_never_show_the_key(
    server: LoopbackServer, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1", timeout=0.5)
    try:
        await _check(provider, OPENAI_KEY, server, reply, caplog)
    finally:
        await provider.aclose()


async def test_refused_connections_never_show_the_key(refused_url: str, caplog: pytest.LogCaptureFixture) -> None:
    for name in SDK_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    request = ModelRequest(model="gpt-4o", messages=(Message(role="user", content="Hi"),), max_tokens=8)
    providers: list[tuple[Provider, str]] = [
        (AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=refused_url), ANTHROPIC_KEY),
        (OpenAIProvider(api_key=OPENAI_KEY, base_url=refused_url), OPENAI_KEY),
    ]
    for provider, key in providers:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(request)
        assert all(key not in text for text in _texts(caught.value, caplog))
        await provider.aclose()  # type: ignore[attr-defined]


async def test_echoed_credentials_are_redacted_but_the_rest_of_the_message_kept(server: LoopbackServer) -> None:
    provider = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1")
    server.reply(echoing(401, lambda text: openai_error("invalid_request_error", text, "invalid_api_key")))
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.complete(
                ModelRequest(model="gpt-4o", messages=(Message(role="user", content="x"),), max_tokens=8)
            )
    finally:
        await provider.aclose()
    message = str(caught.value)
    assert message.startswith("openai: HTTP 401 invalid_request_error: rejected credentials")
    assert "[REDACTED]" in message and OPENAI_KEY not in message
