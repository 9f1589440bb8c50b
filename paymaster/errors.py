"""Paymaster's one exception tree.

    PaymasterError
     ├── ConfigurationError          something the user wrote must change
     │    ├── AgentDefinitionError   an Agent subclass is malformed
     │    ├── UnknownTierError       a tier name that no tier table defines
     │    ├── PriceUnknownError      a USD cap depends on a price nobody knows
     │    └── MissingExtraError      an optional feature's extra is not installed
     ├── LedgerError                 the ledger database refused or is unreadable
     └── ProviderError               a model provider failed; translated at the boundary
          ├── RetryableProviderError
          │    ├── RateLimitError          429; carries retry_after seconds when the provider sent it
          │    ├── OverloadedError         529 / 503
          │    ├── ProviderTimeoutError    billable, unless it timed out connecting or waiting for the pool
          │    ├── ConnectionFailedError   nothing was sent: refused, DNS, TLS, connect timeout
          │    ├── ConnectionDroppedError  billable: the connection broke after the request started
          │    └── ServerError             other 5xx
          ├── BadRequestError        4xx the caller must fix
          ├── AuthenticationError    401 / 403
          └── MalformedResponseError billable: a 200 whose body is cut, unreadable or without usage

Every ``ProviderError`` says whether the provider may bill the failed call
(``billable``): True when the request may have reached the provider, so its
worst case must be charged; False only when the failure proves nothing was
sent, or the provider answered with an HTTP error status it does not bill.

Budget refusals are not errors: a task that hits a cap ends with
``Outcome.status == "budget_exceeded"`` and the ledger says which cap.
"""

from __future__ import annotations

__all__ = [
    "AgentDefinitionError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionDroppedError",
    "ConnectionFailedError",
    "LedgerError",
    "MalformedResponseError",
    "MissingExtraError",
    "OverloadedError",
    "PaymasterError",
    "PriceUnknownError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "RetryableProviderError",
    "ServerError",
    "UnknownTierError",
]


class PaymasterError(Exception):
    """Base of every error Paymaster raises on purpose."""


class ConfigurationError(PaymasterError, ValueError):
    """Something the user configured is wrong; the message says what to change."""


class AgentDefinitionError(ConfigurationError, TypeError):
    """An ``Agent`` subclass is missing or has a malformed class attribute."""


class UnknownTierError(ConfigurationError, KeyError):
    """A tier name was used that the tier table does not define."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class PriceUnknownError(ConfigurationError):
    """A USD cap cannot be enforced because a model's price is unknown."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional feature was asked for but its extra is not installed."""


class LedgerError(PaymasterError):
    """The ledger database could not be opened, read or written."""


class ProviderError(PaymasterError):
    """A model provider call failed; ``provider``, ``status_code`` and ``billable`` say where, how and at what cost.

    ``billable`` is True when the request may have reached the provider, so it
    may be billed and its worst case must be charged. A class sets its usual
    answer; ``billable=`` overrides it for one error, when the cause proves
    otherwise. ``request_id`` is the provider's id for the call, when its
    response carried one; ``served_model`` the model an unreadable answer's
    body named, so that it is charged at that model's price.
    """

    retryable: bool = False
    billable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        billable: bool | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.request_id = request_id
        self.served_model: str | None = None
        if billable is not None:
            self.billable = billable


class RetryableProviderError(ProviderError):
    """A provider failure that may succeed if the same request is sent again."""

    retryable = True


class RateLimitError(RetryableProviderError):
    """The provider rate-limited the call (HTTP 429)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = 429,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code, request_id=request_id)
        self.retry_after = retry_after


class OverloadedError(RetryableProviderError):
    """The provider is overloaded (Anthropic 529, HTTP 503)."""


class ProviderTimeoutError(RetryableProviderError):
    """The call did not complete within its timeout; billable unless it never got a connection."""

    billable = True


class ConnectionFailedError(RetryableProviderError):
    """The provider could not be reached, so nothing was sent (refused, DNS, TLS, connect timeout)."""


class ConnectionDroppedError(RetryableProviderError):
    """The connection broke after the request started to go out; the provider may have billed it."""

    billable = True


class ServerError(RetryableProviderError):
    """The provider answered with a 5xx other than overload."""


class BadRequestError(ProviderError):
    """The provider rejected the request as malformed; retrying will not help."""


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (HTTP 401/403)."""


class MalformedResponseError(ProviderError):
    """The provider's response did not parse as its documented wire format; the call may have been billed."""

    billable = True
