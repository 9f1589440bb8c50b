"""API keys never reach the SDKs' or the HTTP library's log records, at DEBUG, even when a server echoes them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider, Provider
from paymaster.providers._logs import LOGGERS, SecretsFilter, redact_logs

from .loopback import ANTHROPIC_KEY, OPENAI_KEY, LoopbackServer, Received, Reply, chat_completion, claude_message

pytestmark = pytest.mark.anyio

# Keys of no recognisable shape: only the configured-key redaction can catch these.
PLAIN_OPENAI_KEY = "plainOPENAIkey0123456789abcdef"
PLAIN_ANTHROPIC_KEY = "plainANTHROPICkey0123456789abcdef"
REQUEST = ModelRequest(model="m", messages=(Message(role="user", content="Hi"),), max_tokens=8)


def echo_credentials(body: dict[str, object]) -> Callable[[Received], Reply]:
    """A 200 whose headers quote the request's credentials back, as a careless gateway might."""

    def respond(request: Received) -> Reply:
        sent = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        return Reply(200, body, {"x-echo-key": sent, "x-echo-auth": f"Bearer {sent}"})

    return respond


def _formatted(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(record) for record in caplog.records]


@pytest.mark.parametrize(
    ("make", "key", "body"),
    [
        (lambda url, key: OpenAIProvider(api_key=key, base_url=f"{url}/v1"), OPENAI_KEY, chat_completion()),
        (lambda url, key: OpenAIProvider(api_key=key, base_url=f"{url}/v1"), PLAIN_OPENAI_KEY, chat_completion()),
        (lambda url, key: AnthropicProvider(api_key=key, base_url=url), ANTHROPIC_KEY, claude_message()),
        (lambda url, key: AnthropicProvider(api_key=key, base_url=url), PLAIN_ANTHROPIC_KEY, claude_message()),
    ],
    ids=["openai-key-shaped", "openai-plain", "anthropic-key-shaped", "anthropic-plain"],
)
async def test_a_key_echoed_in_a_response_header_never_reaches_a_debug_log(
    server: LoopbackServer,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[str, str], Provider],
    key: str,
    body: dict[str, object],
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make(server.url, key)
    server.reply(echo_credentials(body))
    try:
        await provider.complete(REQUEST)
    finally:
        await provider.aclose()  # type: ignore[attr-defined]
    texts = _formatted(caplog)
    assert any("x-echo-key" in text or "x-echo-auth" in text for text in texts), "the echo was expected in a log"
    assert any("[REDACTED]" in text for text in texts)
    assert not [text for text in texts if key in text or key[:16] in text]


@pytest.mark.parametrize("name", ["openai", "anthropic._base_client", "httpx2", "httpcore2.http11", "httpx"])
def test_message_arguments_and_exception_text_are_redacted_on_every_sdk_logger(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger(name)  # as the SDK or the transport makes it, before any provider is built
    redact_logs([PLAIN_OPENAI_KEY])
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError(f"server said {PLAIN_OPENAI_KEY}")
    except RuntimeError:
        logger.debug("headers %s and %r", {"x-echo": PLAIN_OPENAI_KEY}, [PLAIN_OPENAI_KEY], exc_info=True)
    logger.info(f"inline {PLAIN_OPENAI_KEY}", stack_info=True)
    text = "\n".join(_formatted(caplog))
    assert text.count("[REDACTED]") >= 4  # both arguments, the exception, the inline message
    assert PLAIN_OPENAI_KEY not in text and "RuntimeError: server said [REDACTED]" in text


def test_loggers_of_other_libraries_are_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    redact_logs([PLAIN_OPENAI_KEY])
    caplog.set_level(logging.DEBUG)
    logging.getLogger("myapp").debug("user wrote %s", PLAIN_OPENAI_KEY)
    assert caplog.records[-1].getMessage() == f"user wrote {PLAIN_OPENAI_KEY}"


def test_building_a_provider_installs_the_filter_with_its_key() -> None:
    OpenAIProvider(api_key=PLAIN_OPENAI_KEY, base_url="http://127.0.0.1:9/v1")
    AnthropicProvider(api_key=PLAIN_ANTHROPIC_KEY, base_url="http://127.0.0.1:9")
    for name in (*LOGGERS, "openai._base_client", "httpcore2.connection"):
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, SecretsFilter)]
        assert len(filters) == 1, name  # once, however many providers are built
        assert {PLAIN_OPENAI_KEY, PLAIN_ANTHROPIC_KEY} <= filters[0].secrets


def test_a_record_whose_arguments_do_not_fit_is_kept_and_redacted() -> None:
    record = logging.LogRecord("openai", logging.DEBUG, __file__, 1, "two %s %s", (PLAIN_OPENAI_KEY,), None)
    redacting = SecretsFilter()
    redacting.add([PLAIN_OPENAI_KEY])
    assert redacting.filter(record)
    assert record.getMessage() == "two %s %s ('[REDACTED]',)"
