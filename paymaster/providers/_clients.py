"""What both SDK providers share: one client per event loop, where the key comes from, which model served."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from anyio.lowlevel import current_token

from ..errors import ConfigurationError
from ._errors import redact
from ._types import ModelRequest


class _Closable(Protocol):
    async def close(self) -> None:
        """Close the client's connections."""


C = TypeVar("C", bound=_Closable)


class LoopClients(Generic[C]):
    """One SDK client per running event loop, made on first use.

    An SDK client pools connections, and a pooled connection belongs to the
    event loop that opened it: reused from another loop it fails ("Event loop
    is closed"). ``Runtime.run_sync`` starts a new loop per run, so each loop
    gets its own client. Clients of loops that have ended are dropped when the
    next one is made, so a long-lived program does not pile them up; calling
    ``aclose`` before a loop ends closes its client cleanly.
    """

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._by_loop: dict[object, C] = {}

    def get(self) -> C:
        """The running loop's client, made if it has none yet."""
        loop = current_token().native_token
        client = self._by_loop.get(loop)
        if client is None:
            for ended in [lp for lp in self._by_loop if _is_closed(lp)]:
                # Its connections died with its loop; garbage collection closes their sockets.
                self._by_loop.pop(ended, None)
            client = self._by_loop[loop] = self._make()
        return client

    async def aclose(self) -> None:
        """Close the running loop's client, if one was made."""
        client = self._by_loop.pop(current_token().native_token, None)
        if client is not None:
            await client.close()


def _is_closed(loop: object) -> bool:
    is_closed = getattr(loop, "is_closed", None)  # asyncio loops say; other backends keep their client
    return bool(is_closed()) if callable(is_closed) else False


def resolve_api_key(
    api_key: str | None, api_key_env: str | None, *, base_url: str | None, default_env: str
) -> tuple[str | None, str]:
    """The key to send and the environment variable it comes from ("" when none applies).

    The default variable is read only when no ``base_url`` is given: a key for
    the provider's own API is never sent to some other server by accident.
    """
    env = api_key_env or ("" if base_url else default_env)
    if api_key:
        return api_key, env
    return (os.environ.get(env) or None) if env else None, env


def auth_hint(class_name: str, env: str, has_key: bool) -> str:
    """What to check after a 401/403, naming where the key came from."""
    if not has_key:
        return f"no API key is configured: pass {class_name}(api_key=...) or api_key_env=..."
    source = f"the {env} environment variable or " if env else ""
    return f"check {source}the api_key passed to {class_name}"


def served_model(body: Mapping[str, Any], request: ModelRequest) -> str:
    """The model a response body says served the call; the requested model only when it names none."""
    model = body.get("model")
    return model.strip() if isinstance(model, str) and model.strip() else request.model


def check_base_url(base_url: str | None, *, owner: str, example: str, secrets: Iterable[str] = ()) -> str | None:
    """``base_url`` unchanged when it is an http(s) URL with a host and a numeric port; else a ConfigurationError.

    Checked when the provider is built, so a typo fails at once and by name,
    not as an HTTP library's exception on the first call.
    """
    if base_url is None:
        return None
    shown = redact(base_url, secrets)  # a URL may carry credentials
    problem = _url_problem(base_url)
    if problem:
        raise ConfigurationError(
            f"{owner}(base_url={shown!r}): {problem}; write the server's address with its scheme, host "
            f"and port, e.g. base_url={example!r}"
        )
    return base_url


def _url_problem(url: str) -> str:
    if not url.strip() or any(c.isspace() for c in url):
        return "a URL may not be empty or contain spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- reading it is what validates it
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return ""
