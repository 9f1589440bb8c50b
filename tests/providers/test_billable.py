"""Each failure says whether the request may have reached the provider, and so may be billed.

Real failures come from loopback servers through the official SDKs; failures
that cannot be produced on loopback without a network (DNS, TLS, a pool or
connect timeout) are the SDKs' own exceptions over httpx's, as the SDKs chain them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from paymaster import errors
from paymaster.errors import (
    ConnectionDroppedError,
    ConnectionFailedError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider, Provider

from .loopback import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    LoopbackServer,
    Reply,
    chat_completion,
    claude_error,
    claude_message,
    openai_error,
)

pytestmark = pytest.mark.anyio

REQUEST = ModelRequest(model="m", messages=(Message(role="user", content="Hi"),), max_tokens=8)
Make = Callable[[str], Provider]
MAKERS: dict[str, Make] = {
    "openai": lambda url: OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{url}/v1", timeout=0.5),
    "anthropic": lambda url: AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=url, timeout=0.5),
}
BODIES = {"openai": chat_completion, "anthropic": claude_message}
ERROR_BODIES = {"openai": lambda kind: openai_error(kind, "x"), "anthropic": lambda kind: claude_error(kind, "x")}


@pytest.fixture(params=sorted(MAKERS))
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def provider(wire: str, server: LoopbackServer) -> AsyncIterator[Provider]:
    made = MAKERS[wire](server.url)
    yield made
    await made.aclose()  # type: ignore[attr-defined]


async def _fail(provider: Provider) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.complete(REQUEST)
    return caught.value


def test_every_error_class_says_whether_it_is_billable() -> None:
    billable = {name for name in errors.__all__ if getattr(getattr(errors, name), "billable", False)}
    assert billable == {"ConnectionDroppedError", "MalformedResponseError", "ProviderTimeoutError"}
    assert ProviderError("x", billable=True).billable and not ConnectionDroppedError("x", billable=False).billable


async def test_a_refused_connection_sent_nothing(wire: str, refused_url: str) -> None:
    provider = MAKERS[wire](refused_url)
    try:
        err = await _fail(provider)
    finally:
        await provider.aclose()  # type: ignore[attr-defined]
    assert type(err) is ConnectionFailedError and not err.billable and err.retryable


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        pytest.param(Reply(drop=True), ConnectionDroppedError, id="closed-without-response"),
        pytest.param(Reply(200, chat_completion(), truncate=True), ConnectionDroppedError, id="cut-mid-body"),
        pytest.param(Reply(200, chat_completion(), delay=5), ProviderTimeoutError, id="read-timeout"),
        pytest.param(Reply(200, b"{not json"), MalformedResponseError, id="not-json"),
    ],
)
async def test_failures_after_the_request_went_out_are_billable(
    provider: Provider, server: LoopbackServer, reply: Reply, kind: type[ProviderError]
) -> None:
    server.reply(reply)
    err = await _fail(provider)
    assert type(err) is kind and err.billable
    assert len(server.received) == 1  # it did reach the server


async def test_a_200_without_usage_is_billable_and_keeps_the_request_id(
    wire: str, provider: Provider, server: LoopbackServer
) -> None:
    header = "x-request-id" if wire == "openai" else "request-id"
    server.reply(Reply(200, {**BODIES[wire](), "usage": None}, {header: "req_abc"}))
    err = await _fail(provider)
    assert type(err) is MalformedResponseError and err.billable and err.request_id == "req_abc"


@pytest.mark.parametrize(
    ("status", "kind", "error_type"),
    [
        (429, RateLimitError, "rate_limit_error"),
        (500, ServerError, "api_error"),
        (503, OverloadedError, "api_error"),
        (529, OverloadedError, "overloaded_error"),
        (400, errors.BadRequestError, "invalid_request_error"),
        (401, errors.AuthenticationError, "authentication_error"),
    ],
)
async def test_error_statuses_are_not_billed_and_carry_the_request_id(
    wire: str, provider: Provider, server: LoopbackServer, status: int, kind: type[ProviderError], error_type: str
) -> None:
    header = "x-request-id" if wire == "openai" else "request-id"
    server.reply(Reply(status, ERROR_BODIES[wire](error_type), {header: "req_err", "retry-after": "1"}))
    err = await _fail(provider)
    assert type(err) is kind and not err.billable and err.request_id == "req_err"


async def test_a_gateway_timeout_may_have_run_upstream_so_is_billable(
    wire: str, provider: Provider, server: LoopbackServer
) -> None:
    server.reply(Reply(504, ERROR_BODIES[wire]("api_error")))
    err = await _fail(provider)
    assert type(err) is ProviderTimeoutError and err.billable


# -- what the SDKs raise for failures loopback cannot stage, chained over httpx's own exception --

SDKS: dict[str, Any] = {"openai": openai, "anthropic": anthropic}
HTTPX_REQUEST = httpx2.Request("POST", "https://api.example.invalid/v1/messages")


def _sdk_error(wire: str, cause: Exception) -> Exception:
    sdk = SDKS[wire]
    timeout = isinstance(cause, httpx2.TimeoutException)
    err: Exception = sdk.APITimeoutError(request=HTTPX_REQUEST) if timeout else sdk.APIConnectionError(
        request=HTTPX_REQUEST
    )
    err.__cause__ = cause
    return err


@pytest.mark.parametrize(
    ("cause", "kind", "billable"),
    [
        pytest.param(httpx2.ConnectError("[Errno -2] Name or service not known"), ConnectionFailedError, False,
                     id="dns"),
        pytest.param(httpx2.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
                     ConnectionFailedError, False, id="tls-handshake"),
        pytest.param(httpx2.ConnectError("[Errno 111] Connection refused"), ConnectionFailedError, False,
                     id="refused"),
        pytest.param(httpx2.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."),
                     ConnectionFailedError, False, id="unsupported-protocol"),
        pytest.param(httpx2.ConnectTimeout("timed out"), ProviderTimeoutError, False, id="connect-timeout"),
        pytest.param(httpx2.PoolTimeout("no connection"), ProviderTimeoutError, False, id="pool-timeout"),
        pytest.param(httpx2.WriteTimeout("timed out"), ProviderTimeoutError, True, id="write-timeout"),
        pytest.param(httpx2.ReadTimeout("timed out"), ProviderTimeoutError, True, id="read-timeout"),
        pytest.param(httpx2.WriteError("[Errno 32] Broken pipe"), ConnectionDroppedError, True, id="write-error"),
        pytest.param(httpx2.ReadError("[Errno 104] Connection reset by peer"), ConnectionDroppedError, True,
                     id="reset"),
        pytest.param(httpx2.RemoteProtocolError("Server disconnected without sending a response."),
                     ConnectionDroppedError, True, id="no-response"),
        pytest.param(httpx2.RemoteProtocolError("peer closed connection without sending complete message body"),
                     ConnectionDroppedError, True, id="incomplete-body"),
        pytest.param(httpx2.DecodingError("Error -3 while decompressing data"), MalformedResponseError, True,
                     id="undecodable-body"),
        pytest.param(RuntimeError("something else"), ConnectionDroppedError, True, id="unknown-cause"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("wire_name", sorted(MAKERS))
def test_the_cause_under_the_sdk_error_decides(
    wire_name: str, cause: Exception, kind: type[ProviderError], billable: bool
) -> None:
    provider = MAKERS[wire_name]("http://127.0.0.1:9")
    err = provider._translate(_sdk_error(wire_name, cause))  # type: ignore[attr-defined]
    assert (type(err), err.billable, err.retryable) == (kind, billable, kind is not MalformedResponseError)


@pytest.mark.parametrize(
    ("raised", "kind", "billable"),
    [
        (httpx2.ReadError("reset"), ConnectionDroppedError, True),
        (httpx2.RemoteProtocolError("incomplete body"), ConnectionDroppedError, True),
        (httpx2.ReadTimeout("timed out"), ProviderTimeoutError, True),
        (ValueError("Expecting value: line 1 column 1"), MalformedResponseError, True),
        (KeyError("surprise"), ProviderError, True),
    ],
)
@pytest.mark.parametrize("wire_name", sorted(MAKERS))
def test_httpx_errors_that_escape_the_sdk_are_translated_too(
    wire_name: str, raised: Exception, kind: type[ProviderError], billable: bool
) -> None:
    # A body read after the SDK returned raises httpx's own errors, unwrapped.
    provider = MAKERS[wire_name]("http://127.0.0.1:9")
    err = provider._translate(raised)  # type: ignore[attr-defined]
    assert (type(err), err.billable) == (kind, billable)
