"""Keeping API keys out of the log records of the provider SDKs and their HTTP library, DEBUG included.

At DEBUG the SDKs log request options and response headers, and httpcore logs
raw header lists; a server or proxy that echoes the credentials in a header
puts the key into those records. A filter on those loggers rewrites each
record before any handler sees it: the formatted message (arguments merged
in), the exception text and the stack text pass through ``redact``, which
removes every configured key and anything shaped like one.

A logger's filters run only for records logged on that very logger, not for
those that propagate up from its children, so the filter goes on each named
logger and on every descendant that exists when a provider is built (the SDKs
create theirs at import, which building a provider has done by then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from ._errors import redact

LOGGERS = ("openai", "anthropic", "httpx", "httpcore", "httpx2", "httpcore2")
"""Loggers whose records are redacted: both SDKs and their HTTP library, under its old and new names."""


class SecretsFilter(logging.Filter):
    """Redacts known API keys, and key-shaped strings, from a record's message, exception and stack text."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these secrets from now on (a key, once used, stays redacted: old lines may still be logged)."""
        with self._lock:
            self._secrets = self._secrets | {s for s in secrets if s}

    @property
    def secrets(self) -> frozenset[str]:
        """The secrets this filter redacts."""
        return self._secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` with every secret replaced; never drops a record."""
        secrets = self._secrets
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, as text, for the handler to show
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # The exception objects go: a handler that formats them itself would print the secret again.
            record.exc_text, record.exc_info = redact(record.exc_text, secrets), None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


# One filter for the whole process, as logging's loggers are: each provider adds its key to it.
_FILTER = SecretsFilter()


def redact_logs(secrets: Iterable[str]) -> SecretsFilter:
    """Redact ``secrets`` from the records of ``LOGGERS`` and their descendants; returns the installed filter."""
    _FILTER.add(secrets)
    manager = logging.Logger.manager
    names = [n for n in list(manager.loggerDict) if any(n == root or n.startswith(f"{root}.") for root in LOGGERS)]
    for name in {*LOGGERS, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER
