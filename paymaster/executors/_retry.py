"""Retry policy: which provider errors are retried and how long to wait, with tenacity."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential_jitter

from ..errors import ProviderError, RateLimitError


@dataclass(frozen=True)
class RetryPolicy:
    """How one call is retried: at most ``max_attempts`` tries, exponential waits with jitter.

    A rate limit's retry-after is honoured up to ``max_retry_after`` seconds.
    Every retry is also charged to the task's retry budget (``Budget.retries``,
    ``Budget.retry_usd``), which is what really bounds the cost of failure.
    """

    max_attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 20.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if min(self.initial_wait, self.max_wait, self.max_retry_after) < 0:
            raise ValueError("retry waits must be >= 0 seconds")

    def wait(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: retry-after when the provider sent one."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_retry_after)
        backoff = wait_exponential_jitter(multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait)
        return float(backoff(state))


def is_retryable(exc: BaseException) -> bool:
    """Rate limits, overloads, timeouts, dropped connections and 5xx are worth another try."""
    return isinstance(exc, ProviderError) and exc.retryable
