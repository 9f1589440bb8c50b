"""A provider wrapper for tests that counts how many of its calls were in flight at once."""

from __future__ import annotations

from paymaster import ModelRequest, ModelResponse
from paymaster.providers._types import Provider


class Inflight:
    """Wraps a provider and counts how many of its calls were in flight at once."""

    def __init__(self, inner: Provider) -> None:
        self.inner, self.name = inner, inner.name
        self.now = self.peak = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The inner provider's answer, counted while it is awaited."""
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.inner.complete(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        """Close the inner provider's connections on the running loop, if it keeps any."""
        aclose = getattr(self.inner, "aclose", None)
        if aclose is not None:
            await aclose()
