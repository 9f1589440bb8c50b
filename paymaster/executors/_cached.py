"""The semantic cache around model calls: a hit is free and recorded with what it saved.

Only plain requests are cached: one user message, no tools (a tool's answer
can change), and only complete answers (not cut at ``max_tokens``). The scope
keeps tenants, agents, agent versions and tiers apart; the call's kind and a
hash of its system prompt and schema ride in the tier part, so a summarise
call never answers an execute call.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..providers._types import ModelRequest, ModelResponse

if TYPE_CHECKING:
    from ..cache import CacheHit, CacheScope


class Cache(Protocol):
    """What the runtime needs of a cache (``paymaster.cache.SemanticCache`` is one)."""

    def lookup(self, scope: CacheScope, prompt: str) -> CacheHit | None:
        """An answer stored under exactly ``scope`` for ``prompt``, or None."""

    def store(self, scope: CacheScope, prompt: str, output: str, cost_usd: Decimal) -> bool:
        """Keep ``output`` as the answer; False when not admitted."""

    def close(self) -> None:
        """Release the cache's files."""


_ONE_AT_A_TIME = anyio.CapacityLimiter(1)


def cache_key(tenant: str, agent: str, agent_version: str, tier: str, kind: str,
              request: ModelRequest) -> tuple[CacheScope, str] | None:
    """The scope and prompt to cache ``request`` under, or None when it must not be cached."""
    from ..cache import CacheScope

    users = [m for m in request.messages if m.role == "user"]
    if request.tools or len(request.messages) != 1 or len(users) != 1:
        return None
    frame = json.dumps([request.system or "", request.json_schema], sort_keys=True)
    digest = hashlib.sha256(frame.encode()).hexdigest()[:12]
    return CacheScope(tenant, agent, agent_version, f"{tier}|{kind}|{request.model}|{digest}"), users[0].content


async def cache_lookup(cache: Cache, scope: CacheScope, prompt: str) -> CacheHit | None:
    """Look ``prompt`` up off the event loop (embedding is CPU work)."""
    return await anyio.to_thread.run_sync(cache.lookup, scope, prompt, limiter=_ONE_AT_A_TIME)


async def cache_store(cache: Cache, scope: CacheScope, prompt: str, response: ModelResponse, cost: Decimal) -> None:
    """Keep a complete answer for later hits."""
    if response.tool_calls or response.finish_reason == "length" or not response.text.strip():
        return
    await anyio.to_thread.run_sync(cache.store, scope, prompt, response.text, cost, limiter=_ONE_AT_A_TIME)


def hit_response(hit: CacheHit, request: ModelRequest) -> ModelResponse:
    """The cached answer as a response that used no tokens."""
    from ..providers._types import Usage

    return ModelResponse(text=hit.output, usage=Usage(), model=request.model, finish_reason="cache_hit")


def describe_hit(hit: Any) -> str:
    """A ledger note for a hit: how it matched and what it saved."""
    match = "exact match" if hit.kind == "exact" else f"semantic match, cosine {hit.similarity:.3f}"
    return f"{match}; saved ${hit.cost_usd}"
