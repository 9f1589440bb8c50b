"""Translating provider SDK failures into Paymaster's exception tree, with secrets redacted.

Both official SDKs raise the same shapes (a status error carrying the HTTP
response, a timeout, a connection error, a validation error); this module turns
an HTTP status, its headers and its body into the matching ``ProviderError``.
Every message passes through ``redact`` first: a provider or proxy may echo the
request's credentials back in an error body, and an exception message ends up
in logs, ledger rows and tracebacks.

Whether a failed call may be billed (``ProviderError.billable``) is decided
here from the HTTP library's exception under the SDK's: only a failure to get
a connection at all (refused, DNS, TLS handshake, connect or pool timeout)
proves the request never left. Anything later (a write or read error, a read
timeout, a connection closed before or during the response) may have reached
the provider, which bills a request once it has read it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionDroppedError,
    ConnectionFailedError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)

REDACTED = "[REDACTED]"
_MAX_MESSAGE = 500

# Shapes of credentials that may show up in text we did not write: provider keys
# (sk-..., sk-ant-..., sk-proj-...) and any bearer token.
_KEY_SHAPES = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+|\bsk-[A-Za-z0-9_-]{8,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every known secret, and anything shaped like an API key or bearer token, in ``text``."""
    for secret in secrets:
        if len(secret) >= 4:  # a placeholder of 1-3 characters is no secret, and would shred the text
            text = text.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """``redact`` applied to every string inside nested dicts, lists and tuples."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, secrets) for v in value]
    return value


def scrub_sdk_error(exc: BaseException, secrets: Iterable[str]) -> None:
    """Redact an SDK exception in place, since it travels on as the ``__cause__`` of ours.

    Tracebacks and ``logger.exception`` print the cause's message, which the SDK
    builds from the raw error body.
    """
    secrets = tuple(secrets)
    exc.args = tuple(redact_value(a, secrets) for a in exc.args)
    for attr in ("message", "body"):
        if hasattr(exc, attr):
            setattr(exc, attr, redact_value(getattr(exc, attr), secrets))


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``retry-after`` as seconds or an HTTP-date; else None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = _finite(lowered.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000, 0.0)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _finite(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _finite(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def error_detail(body: object) -> tuple[str, str, str]:
    """``(type, code, message)`` from an error body in Anthropic's or OpenAI's shape; blanks when absent."""
    if isinstance(body, str | bytes):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return "", "", text.strip()
    error = body.get("error", body) if isinstance(body, Mapping) else None
    if isinstance(error, str):  # {"error": "text"}, as some compatible servers answer
        return "", "", error
    if not isinstance(error, Mapping):
        return "", "", ""
    kind, code, message = (str(error.get(key) or "") for key in ("type", "code", "message"))
    return kind, code, message


def request_id_in(headers: Mapping[str, str]) -> str | None:
    """The provider's request id from response headers (Anthropic ``request-id``, OpenAI ``x-request-id``)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("request-id") or lowered.get("x-request-id") or None


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: object,
    *,
    provider: str,
    secrets: Iterable[str] = (),
    hint: str = "",
) -> ProviderError:
    """The Paymaster error for an HTTP error response; ``hint`` is appended for auth failures.

    Providers do not bill requests they answer with an error status, so these
    errors are not billable, but for a gateway timeout (504): the gateway
    passed the request on and gave up waiting, so the provider may have run it.
    """
    error = _status_error(status, headers, body, provider=provider, secrets=secrets, hint=hint)
    error.billable = status == 504
    error.request_id = request_id_in(headers)
    return error


def _status_error(
    status: int, headers: Mapping[str, str], body: object, *, provider: str, secrets: Iterable[str], hint: str
) -> ProviderError:
    kind, code, detail = error_detail(body)
    text = f"{provider}: HTTP {status}"
    if kind or code:
        text += f" {kind or code}"
    if detail:
        text += f": {detail}"
    if status in (401, 403) and hint:
        text += f" ({hint})"
    message = redact(text, secrets)[:_MAX_MESSAGE]
    if "overloaded_error" in (kind, code) or status in (503, 529):
        return OverloadedError(message, provider=provider, status_code=status)
    if status == 429:
        if "insufficient_quota" in (kind, code):
            # Out of credit, not out of rate: waiting does not help, so it must not be retried.
            return BadRequestError(message, provider=provider, status_code=status)
        return RateLimitError(message, provider=provider, status_code=status, retry_after=parse_retry_after(headers))
    if status in (401, 403):
        return AuthenticationError(message, provider=provider, status_code=status)
    if status in (408, 504):
        return ProviderTimeoutError(message, provider=provider, status_code=status)
    if status >= 500:
        return ServerError(message, provider=provider, status_code=status)
    if status >= 400:
        return BadRequestError(message, provider=provider, status_code=status)
    return MalformedResponseError(message, provider=provider, status_code=status)


def error_in(body: object) -> str:
    """``" (error: ...)"`` when a body that should hold a result holds an error instead; else ``""``."""
    if not isinstance(body, Mapping) or "error" not in body:
        return ""
    kind, code, message = error_detail(body)
    return f" (error: {' '.join(p for p in (kind or code, message) if p)})"


def malformed(provider: str, what: str, secrets: Iterable[str] = (), status_code: int | None = 200) -> ProviderError:
    """A ``MalformedResponseError`` saying what did not parse."""
    message = redact(f"{provider}: response is not a valid {what}", secrets)[:_MAX_MESSAGE]
    return MalformedResponseError(message, provider=provider, status_code=status_code)


@dataclass(frozen=True, slots=True)
class SdkErrorTypes:
    """The four SDK exception classes that matter, from whichever SDK raised them."""

    timeout: type[BaseException]
    connection: type[BaseException]
    status: type[BaseException]
    validation: type[BaseException]


def translate(
    exc: Exception,
    sdk: SdkErrorTypes,
    *,
    provider: str,
    secrets: Iterable[str] = (),
    hint: str = "",
) -> ProviderError:
    """The Paymaster error for an exception raised by an SDK call (redacting the SDK error in place)."""
    secrets = tuple(secrets)
    scrub_sdk_error(exc, secrets)
    transport = transport_error(exc)
    names = {cls.__name__ for cls in type(transport).__mro__} if transport is not None else set()
    never_sent = bool(names & _NEVER_SENT)
    detail = f": {redact(str(transport), secrets)}" if transport is not None and str(transport) else ""
    # Timeouts before connection errors: the SDKs' timeout is a connection-error subclass.
    if isinstance(exc, sdk.timeout) or "TimeoutException" in names:
        what = "timed out getting a connection; nothing was sent" if never_sent else "request timed out"
        return ProviderTimeoutError(f"{provider}: {what}", provider=provider, billable=not never_sent)
    if "DecodingError" in names:  # the response arrived, but its content encoding is broken
        return malformed(provider, f"response body ({type(transport).__name__})", secrets)
    if never_sent:
        return ConnectionFailedError(f"{provider}: connection failed{detail}"[:_MAX_MESSAGE], provider=provider)
    if isinstance(exc, sdk.connection) or transport is not None:
        message = f"{provider}: connection dropped after the request started{detail}"
        return ConnectionDroppedError(message[:_MAX_MESSAGE], provider=provider)
    if isinstance(exc, sdk.status):
        response = getattr(exc, "response", None)
        headers: Mapping[str, str] = getattr(response, "headers", None) or {}
        status = int(getattr(exc, "status_code", 0))
        return status_error(status, headers, getattr(exc, "body", None), provider=provider, secrets=secrets, hint=hint)
    if isinstance(exc, (sdk.validation, ValueError)):
        # The SDK's schema validation, or a body that is not JSON at all (json.JSONDecodeError).
        return malformed(provider, f"response body ({type(exc).__name__})", secrets)
    # Nothing proves the request never left, so it may be billed.
    message = redact(f"{provider}: {type(exc).__name__}: {exc}", secrets)[:_MAX_MESSAGE]
    return ProviderError(message, provider=provider, billable=True)


# The HTTP library's errors that prove no request went out: no connection was made.
_NEVER_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol"})
# httpx and its transport, under the names the SDKs have used for them.
_HTTP_LIBRARIES = frozenset({"httpx", "httpx2", "httpcore", "httpcore2"})


def transport_error(exc: BaseException) -> BaseException | None:
    """The HTTP library's exception in ``exc``'s cause chain (``exc`` itself included), else None.

    The SDKs wrap it (``raise APIConnectionError(...) from err``); the first
    one found is the library's own view of what failed, and so of whether
    anything was sent.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if type(current).__module__.partition(".")[0] in _HTTP_LIBRARIES:
            return current
        seen.add(id(current))
        current = current.__cause__
    return None
