"""Expected cost of a call whose prompt prefix is already in the provider's cache.

This is an estimate for planning and reporting (what a call will probably
cost), never a reservation: the budget guard reserves ``ModelPrices.worst_case``,
which assumes no cache hit and the dearest input rate, so a wrong guess here
can never let spend pass a cap.

The prefix a provider can cache is the part of a request that repeats from
call to call: tool definitions, the output schema and the system prompt
(Anthropic caches in that order; OpenAI caches any repeated prefix of 1,024
tokens or more). After a call, the provider's own usage says how much it
cached: ``cache_write_tokens`` on the first call, ``cache_read_tokens`` on the
next; pass that number as ``cached_prefix_tokens``.
"""

from __future__ import annotations

import json
from decimal import Decimal

from ..providers._types import ModelRequest, Usage
from ._prices import ModelPrices
from ._tokens import REQUEST_OVERHEAD_TOKENS, TOOLS_OVERHEAD_TOKENS, count_tokens, estimate_prompt_tokens


def prefix_tokens(request: ModelRequest) -> int:
    """Estimate the tokens of the request's cacheable prefix: tools, output schema and system prompt."""
    texts = [t.name + t.description + json.dumps(t.parameters) for t in request.tools]
    if request.json_schema is not None:
        texts.append(json.dumps(request.json_schema))
    if request.system:
        texts.append(request.system)
    overhead = TOOLS_OVERHEAD_TOKENS if request.tools or request.json_schema is not None else 0
    return sum(count_tokens(t) for t in texts if t) + overhead + REQUEST_OVERHEAD_TOKENS


def expected_usage(
    request: ModelRequest,
    *,
    cached_prefix_tokens: int = 0,
    cache_write_tokens: int = 0,
    output_tokens: int | None = None,
) -> Usage:
    """The usage a call will probably report, with ``cached_prefix_tokens`` of its prompt read from cache.

    ``cache_write_tokens`` are the tokens expected to be written to the cache
    (a first call that marks its prefix); ``output_tokens`` defaults to the
    request's ``max_tokens``. Cached parts are clamped to the prompt estimate,
    so nothing is counted twice.
    """
    if min(cached_prefix_tokens, cache_write_tokens) < 0 or (output_tokens is not None and output_tokens < 0):
        raise ValueError("token counts must be >= 0")
    prompt = estimate_prompt_tokens(request)
    read = min(cached_prefix_tokens, prompt)
    write = min(cache_write_tokens, prompt - read)
    return Usage(
        input_tokens=prompt,
        output_tokens=request.max_tokens if output_tokens is None else output_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def expected_cost(
    prices: ModelPrices,
    request: ModelRequest,
    *,
    cached_prefix_tokens: int = 0,
    cache_write_tokens: int = 0,
    output_tokens: int | None = None,
) -> Decimal:
    """Expected dollar cost of ``request`` given a cached prefix of ``cached_prefix_tokens`` tokens."""
    usage = expected_usage(
        request,
        cached_prefix_tokens=cached_prefix_tokens,
        cache_write_tokens=cache_write_tokens,
        output_tokens=output_tokens,
    )
    return prices.cost(usage)
