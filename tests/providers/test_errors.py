"""The translation helpers on their own: retry-after parsing, status mapping, redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from paymaster.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
)
from paymaster.providers._errors import REDACTED, error_detail, parse_retry_after, redact, status_error

NOW = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "Thu, 15 Jan 2026 12:00:45 GMT"}, 45.0),
        ({"retry-after": "Thursday, 15-Jan-26 12:01:00 GMT"}, 60.0),  # RFC 850, still legal
        ({"retry-after": "Thu, 15 Jan 2026 11:59:00 GMT"}, 0.0),  # already past: go now
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_takes_seconds_milliseconds_and_http_dates(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, {"error": {"type": "rate_limit_error", "message": "x"}}, RateLimitError),
        (429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "x"}}, BadRequestError),
        (529, {"error": {"type": "overloaded_error", "message": "x"}}, OverloadedError),
        (500, {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}, OverloadedError),
        (503, "Service Unavailable", OverloadedError),
        (500, None, ServerError),
        (502, "<html>bad gateway</html>", ServerError),
        (504, None, ProviderTimeoutError),
        (408, None, ProviderTimeoutError),
        (401, None, AuthenticationError),
        (403, None, AuthenticationError),
        (400, None, BadRequestError),
        (404, None, BadRequestError),
        (422, {"error": "bad field"}, BadRequestError),
        (302, None, MalformedResponseError),
    ],
)
def test_statuses_map_onto_the_exception_tree(status: int, body: object, kind: type[ProviderError]) -> None:
    err = status_error(status, {"retry-after": "4"}, body, provider="p")
    assert type(err) is kind
    assert err.status_code == status and err.provider == "p"
    if isinstance(err, RateLimitError):
        assert err.retry_after == 4.0


def test_error_bodies_of_both_providers_and_of_plain_servers_are_read() -> None:
    assert error_detail({"type": "error", "error": {"type": "api_error", "message": "boom"}}) == (
        "api_error",
        "",
        "boom",
    )
    assert error_detail({"error": {"message": "m", "type": "t", "code": "c"}}) == ("t", "c", "m")
    assert error_detail({"error": "model not loaded"}) == ("", "", "model not loaded")
    assert error_detail(b"upstream timeout\n") == ("", "", "upstream timeout")
    assert error_detail('{"error": {"message": "as text"}}') == ("", "", "as text")
    assert error_detail(None) == ("", "", "")


def test_redaction_covers_known_secrets_and_key_shapes() -> None:
    text = "key sk-ant-api03-abcdefghijkl, auth Bearer eyJhbGciOi.J9x, custom hunter2hunter2, short abc"
    out = redact(text, secrets=["hunter2hunter2", "abc"])
    assert "sk-ant" not in out and "eyJhbGciOi" not in out and "hunter2" not in out
    assert out.count(REDACTED) == 3
    assert "short abc" in out  # too short to be a secret; redacting it would shred the message


def test_messages_are_redacted_and_bounded() -> None:
    err = status_error(401, {}, {"error": {"message": "bad key sk-proj-" + "x" * 40 + " " + "y" * 900}}, provider="p")
    assert "sk-proj" not in str(err) and len(str(err)) <= 500
