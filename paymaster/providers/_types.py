"""The one narrow provider interface: a request goes in, text plus usage comes out."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A tool invocation the model asked for."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One chat message; ``tool`` messages answer the assistant's ``tool_calls`` by id."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class ToolSpec(BaseModel):
    """A tool offered to the model: name, description and JSON schema of its arguments."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(BaseModel):
    """Tokens as the provider reported them.

    ``input_tokens`` counts the whole prompt, cached parts included (OpenAI's
    convention); ``cache_read_tokens`` and ``cache_write_tokens`` are the
    subsets of it that were read from or written to the provider's prompt cache.
    Providers whose wire format counts them apart (Anthropic) add them up at
    the boundary, so nothing is priced twice.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_read_tokens: NonNegativeInt = 0
    cache_write_tokens: NonNegativeInt = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class ModelRequest(BaseModel):
    """Everything a provider needs for one model call."""

    model_config = ConfigDict(frozen=True)

    model: str
    messages: tuple[Message, ...]
    max_tokens: int = Field(gt=0)
    system: str | None = None
    json_schema: dict[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    cache_prefix: bool = True
    """Ask the provider to cache the stable prefix (system prompt, tools) where it supports that."""


class ModelResponse(BaseModel):
    """A provider's answer: text, tool calls and usage exactly as the provider reported it.

    ``model`` is the model the response says served it, which may differ from
    the one asked for (an alias resolving to a snapshot, a gateway substituting
    a model); it is the requested model only when the response names none.
    ``request_id`` is the provider's id for the call (its response header),
    for matching a call to the provider's own records; None when it sent none.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    usage: Usage
    model: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    request_id: str | None = None


@runtime_checkable
class Provider(Protocol):
    """Anything that can answer a ``ModelRequest``; wrappers add cache, budgets and tracing."""

    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the response with the provider's own usage."""
