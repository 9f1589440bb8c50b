"""The two wire formats the billing stand-in speaks (tests/billing_server.py): what it reads from a
request (max_tokens, the prompt's text) and the bodies it answers with, in OpenAI's and Anthropic's shapes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from providers.loopback import chat_completion, claude_error, claude_message, openai_error

if TYPE_CHECKING:
    from billing_server import BillLine

Wire = Literal["openai", "anthropic"]


def max_tokens(wire: Wire, body: Mapping[str, Any]) -> int:
    """The request's output cap (OpenAI: ``max_completion_tokens``, else ``max_tokens``); 4096 when it sets none."""
    value = body.get("max_tokens") if wire == "anthropic" else body.get("max_completion_tokens", body.get("max_tokens"))
    return int(value) if isinstance(value, int) else 4096


def texts(content: Any) -> Iterable[str]:
    """The text inside a message's content: a string, or blocks with ``text`` or nested ``content``."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, Mapping):
                if isinstance(block.get("text"), str):
                    yield block["text"]
                yield from texts(block.get("content"))


def prompt_bytes(wire: Wire, body: Mapping[str, Any]) -> int:
    """UTF-8 bytes of the prompt's text: system prompt, message text and tool results."""
    parts = list(texts(body.get("system"))) if wire == "anthropic" else []
    for message in body.get("messages") or ():
        if isinstance(message, Mapping):
            parts.extend(texts(message.get("content")))
    return sum(len(p.encode()) for p in parts)


def error_body(wire: Wire, status: int, model: str) -> dict[str, Any]:
    """An error body for ``status`` in the provider's own shape."""
    kinds = {429: "rate_limit_error", 529: "overloaded_error", 503: "overloaded_error", 404: "not_found_error",
             400: "invalid_request_error", 401: "authentication_error"}  # fmt: skip
    kind = kinds.get(status, "api_error")
    message = f"model {model!r} not found" if status == 404 else f"billing server: scripted {status}"
    return claude_error(kind, message) if wire == "anthropic" else openai_error(kind, message)


def answer(
    wire: Wire, body: Mapping[str, Any], served: str, text: str, line: BillLine, *, omit_usage: bool
) -> dict[str, Any]:
    """The 200 body reporting ``line``'s usage as the provider's wire format counts it (Anthropic: cache apart)."""
    if wire == "openai":
        details: dict[str, int] = {"cached_tokens": line.cache_read_tokens}
        if line.cache_write_tokens:
            details["cache_write_tokens"] = line.cache_write_tokens
        usage = {"prompt_tokens": line.input_tokens, "completion_tokens": line.output_tokens,
                 "total_tokens": line.input_tokens + line.output_tokens, "prompt_tokens_details": details}  # fmt: skip
        message = {"role": "assistant", "content": text, "refusal": None}
        data = chat_completion(message, usage=usage, model=served)
    else:
        choice = body.get("tool_choice")
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if isinstance(choice, Mapping) and choice.get("type") == "tool":
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            arguments = parsed if isinstance(parsed, dict) else {"value": text}
            content = [{"type": "tool_use", "id": f"toolu_{line.number}", "name": choice["name"], "input": arguments}]
        usage = {"input_tokens": line.input_tokens - line.cache_read_tokens - line.cache_write_tokens,
                 "output_tokens": line.output_tokens, "cache_read_input_tokens": line.cache_read_tokens,
                 "cache_creation_input_tokens": line.cache_write_tokens}  # fmt: skip
        stop = "tool_use" if content[0]["type"] == "tool_use" else "end_turn"
        data = claude_message(content, usage=usage, stop_reason=stop, model=served)
    if omit_usage:
        data.pop("usage")
    return data
