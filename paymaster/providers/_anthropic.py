"""Claude through the official ``anthropic`` SDK (Messages API).

Wire decisions, each because the Messages API works that way on every model:

- The system prompt goes in the top-level ``system`` parameter; ``system``
  messages inside the conversation are appended to it.
- ``tool`` messages become ``tool_result`` blocks in a user turn, and
  consecutive turns of one role are merged, as the API expects.
- Structured output (``request.json_schema``) is a forced tool by default:
  one extra tool whose ``input_schema`` is the schema, with ``tool_choice``
  forcing it (or ``"any"`` when the request offers tools of its own, so the
  model may call those first). Every Claude model supports this. The native
  ``output_config.format`` (constrained decoding) is available with
  ``structured_output="native"`` for the models that support it.
- With ``request.cache_prefix`` the stable prefix is marked with
  ``cache_control: ephemeral`` (5-minute TTL): the system prompt's block, or
  the last tool definition when there is no system prompt. Anthropic caches
  in the order tools, system, messages, so one breakpoint covers both.
- Usage: Anthropic's ``input_tokens`` excludes cache reads and writes, so they
  are added in; ``Usage.input_tokens`` is the whole prompt. All cache writes
  are priced at the 5-minute rate, the only TTL this provider asks for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import BadRequestError, ConfigurationError, PaymasterError, ProviderError
from ._clients import LoopClients, auth_hint, check_base_url, resolve_api_key, served_model
from ._errors import SdkErrorTypes, error_in, malformed, redact, translate
from ._logs import redact_logs
from ._types import Message, ModelRequest, ModelResponse, ToolCall, Usage

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic, Timeout
    from anthropic.types import (
        CacheControlEphemeralParam,
        ContentBlockParam,
        MessageParam,
        OutputConfigParam,
        TextBlockParam,
        ToolChoiceParam,
        ToolParam,
        ToolResultBlockParam,
        ToolUseBlockParam,
    )

DEFAULT_TIMEOUT = 600.0
"""Seconds per attempt; passing it explicitly also keeps the SDK from refusing large ``max_tokens``."""

OUTPUT_TOOL = "structured_output"
"""Name of the forced tool that carries structured output."""

REQUEST_ID_HEADER = "request-id"
"""The response header carrying Anthropic's id for the call."""

_ENV_KEY = "ANTHROPIC_API_KEY"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
    "pause_turn": "pause",
}


class AnthropicProvider:
    """Claude models through ``anthropic.AsyncAnthropic``, with usage and errors in Paymaster's terms.

    The key comes from ``api_key``, else the environment variable ``api_key_env``,
    else ``ANTHROPIC_API_KEY`` unless ``base_url`` is given (a key is never sent
    to a server the user did not name it for). A missing key is a
    ``ConfigurationError`` on the first call, not at construction. The SDK's own
    retries are off: Paymaster retries, so every attempt is budgeted and recorded.
    """

    def __init__(
        self,
        *,
        name: str = "anthropic",
        api_key: str | None = None,
        api_key_env: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        client: AsyncAnthropic | None = None,
        structured_output: Literal["tool", "native"] = "tool",
    ) -> None:
        import anthropic  # imported here, not at module level: it takes a second or two to load

        self.name = name
        self.base_url = check_base_url(
            base_url, owner="AnthropicProvider", example="http://127.0.0.1:8080", secrets=[api_key or ""]
        )
        self.structured_output = structured_output
        self._sdk = anthropic
        self._errors = SdkErrorTypes(
            timeout=anthropic.APITimeoutError,
            connection=anthropic.APIConnectionError,
            status=anthropic.APIStatusError,
            validation=anthropic.APIResponseValidationError,
        )
        self._clients = LoopClients(self._new_client)
        self._given = client.with_options(max_retries=0) if client is not None else None
        if client is not None:
            self._timeout: float | Timeout | None = timeout if timeout is not None else client.timeout
            self._secrets: tuple[str, ...] = tuple(s for s in (client.api_key, client.auth_token) if s)
            self._missing_key, self._key, self._hint = "", "", auth_hint(type(self).__name__, "", True)
            redact_logs(self._secrets)
            return
        key, env = resolve_api_key(api_key, api_key_env, base_url=base_url, default_env=_ENV_KEY)
        seconds = timeout or DEFAULT_TIMEOUT
        self._timeout = anthropic.Timeout(seconds, connect=min(seconds, 10.0))
        self._secrets = (key,) if key else ()
        # A server named by URL may need no key; the provider's own API without one is a configuration error.
        self._missing_key = "" if key or (base_url and not api_key_env) else env
        self._key = key or "no-key-configured"  # the SDK insists on some credential
        self._hint = auth_hint(type(self).__name__, env, key is not None)
        redact_logs(self._secrets)  # the SDKs log headers at DEBUG; an echoed key must not reach a log

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, base_url={self.base_url!r})"

    def _get_client(self) -> AsyncAnthropic:
        if self._given is not None:
            return self._given
        if self._missing_key:
            raise ConfigurationError(
                f"{self.name}: no Anthropic API key; set the {self._missing_key} environment variable "
                "or pass AnthropicProvider(api_key=...)"
            )
        return self._clients.get()

    def _new_client(self) -> AsyncAnthropic:
        try:
            client = self._sdk.AsyncAnthropic(
                api_key=self._key, base_url=self.base_url, timeout=self._timeout, max_retries=0
            )
        except Exception as exc:  # the SDK or httpx refusing its settings; nothing was sent
            raise ConfigurationError(
                redact(f"{self.name}: the Anthropic SDK refused this provider's settings: {exc}", self._secrets)
            ) from exc
        # Making a client imports the HTTP transport, whose loggers exist only from then on.
        redact_logs(self._secrets)
        return client

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send ``request`` to the Messages API and return text, tool calls and the reported usage."""
        client = self._get_client()
        wire = build_request(request, structured_output=self.structured_output, provider=self.name)
        omit = self._sdk.omit
        try:
            raw = await client.messages.with_raw_response.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=wire.messages,
                system=wire.system or omit,
                tools=wire.tools or omit,
                tool_choice=wire.tool_choice or omit,
                output_config=wire.output_config or omit,
                timeout=self._timeout,
            )
            data = await raw.json()
        except PaymasterError:
            raise
        except Exception as exc:  # the SDK's, httpx's, or a body that is not JSON: none leaves untranslated
            raise self._translate(exc) from exc
        request_id = raw.http_response.headers.get(REQUEST_ID_HEADER)
        try:
            return parse_response(
                data,
                request,
                provider=self.name,
                forced_tool=wire.forced_tool,
                secrets=self._secrets,
                request_id=request_id,
            )
        except ProviderError as exc:
            exc.request_id = exc.request_id or request_id  # so a billed, unreadable answer can be reconciled
            if isinstance(data, Mapping):  # and charged at the price of the model that answered
                exc.served_model = served_model(data, request)
            raise

    def _translate(self, exc: Exception) -> ProviderError:
        return translate(exc, self._errors, provider=self.name, secrets=self._secrets, hint=self._hint)

    async def aclose(self) -> None:
        """Close the HTTP client this provider opened in the running event loop (a given client stays open)."""
        await self._clients.aclose()


@dataclass
class WireRequest:
    """The Messages API arguments built from a ``ModelRequest``."""

    system: list[TextBlockParam] = field(default_factory=list)
    messages: list[MessageParam] = field(default_factory=list)
    tools: list[ToolParam] = field(default_factory=list)
    tool_choice: ToolChoiceParam | None = None
    output_config: OutputConfigParam | None = None
    forced_tool: str | None = None


def build_request(
    request: ModelRequest, *, structured_output: str = "tool", provider: str = "anthropic"
) -> WireRequest:
    """Translate ``request`` into Messages API arguments."""
    wire = WireRequest()
    system_texts = [request.system] if request.system else []
    system_texts += [m.content for m in request.messages if m.role == "system" and m.content]
    if system_texts:
        wire.system = [{"type": "text", "text": "\n\n".join(system_texts)}]
    wire.messages = _messages(request.messages, provider)
    for t in request.tools:
        tool: ToolParam = {"name": t.name, "input_schema": t.parameters}
        if t.description:  # an empty one tells the model nothing; leave it out
            tool["description"] = t.description
        wire.tools.append(tool)
    if request.json_schema is not None:
        if structured_output == "native":
            wire.output_config = {"format": {"type": "json_schema", "schema": request.json_schema}}
        else:
            if any(t.name == OUTPUT_TOOL for t in request.tools):
                raise ConfigurationError(f"a tool may not be named {OUTPUT_TOOL!r}: it carries structured output")
            wire.tools.append(
                {
                    "name": OUTPUT_TOOL,
                    "description": "Give your final answer by calling this tool; its input is the answer.",
                    "input_schema": _object_schema(request.json_schema),
                }
            )
            wire.forced_tool = OUTPUT_TOOL
            # With tools of its own the model must still be free to call them first.
            wire.tool_choice = {"type": "any"} if request.tools else {"type": "tool", "name": OUTPUT_TOOL}
    if request.cache_prefix:
        mark: CacheControlEphemeralParam = {"type": "ephemeral"}
        if wire.system:
            wire.system[-1]["cache_control"] = mark
        elif wire.tools:
            wire.tools[-1]["cache_control"] = mark
    return wire


def _object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # A tool's input must be an object; any other schema is wrapped as {"value": ...}.
    if schema.get("type") == "object":
        return schema
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}


def _messages(messages: tuple[Message, ...], provider: str) -> list[MessageParam]:
    turns: list[tuple[Literal["user", "assistant"], list[ContentBlockParam]]] = []
    for m in messages:
        if m.role == "system":
            continue
        blocks: list[ContentBlockParam] = []
        if m.role == "tool":
            if not m.tool_call_id:
                raise BadRequestError(
                    f"{provider}: a tool message needs the tool_call_id of the call it answers", provider=provider
                )
            result: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            blocks.append(result)
        elif m.content:  # the API rejects empty text blocks
            text: TextBlockParam = {"type": "text", "text": m.content}
            blocks.append(text)
        for call in m.tool_calls:
            use: ToolUseBlockParam = {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            blocks.append(use)
        if not blocks:
            continue
        role: Literal["user", "assistant"] = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            out.append({"role": "user", "content": blocks})
        else:
            out.append({"role": "assistant", "content": blocks})
    return out


def parse_response(
    data: object,
    request: ModelRequest,
    *,
    provider: str,
    forced_tool: str | None = None,
    secrets: tuple[str, ...] = (),
    request_id: str | None = None,
) -> ModelResponse:
    """Turn a Messages API response body into a ``ModelResponse``; anything off-format is malformed.

    The model is the one the body names (what served, and so what is billed), else the requested one.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise malformed(provider, f"Anthropic message: no content list{error_in(data)}", secrets)
    texts: list[str] = []
    answer: str | None = None  # the forced tool's input, as JSON text
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not isinstance(block, Mapping):
            raise malformed(provider, "Anthropic message: a content block is not an object")
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            args = block.get("input")
            if not isinstance(args, Mapping) or not isinstance(block.get("name"), str):
                raise malformed(provider, "Anthropic message: tool_use block without name or object input")
            if block["name"] == forced_tool:
                schema = request.json_schema or {}
                answer = json.dumps(args if schema.get("type") == "object" else args.get("value"))
            else:
                calls.append(ToolCall(id=str(block.get("id", "")), name=block["name"], arguments=dict(args)))
    stop = data.get("stop_reason")
    finish = _FINISH.get(stop, stop) if isinstance(stop, str) else None
    if answer is not None and finish == "tool_calls" and not calls:
        finish = "stop"  # the model gave its structured answer; no tool is waiting to run
    return ModelResponse(
        text=answer if answer is not None else "".join(texts),
        usage=parse_usage(data.get("usage"), provider=provider),
        model=served_model(data, request),
        tool_calls=tuple(calls),
        finish_reason=finish,
        request_id=request_id or None,
    )


def parse_usage(usage: object, *, provider: str) -> Usage:
    """Anthropic usage to ``Usage``: cache reads and writes are added into the whole-prompt count."""
    if not isinstance(usage, Mapping):
        raise malformed(provider, "Anthropic message: no usage")
    counts = {}
    for name in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = usage.get(name) or 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise malformed(provider, f"Anthropic message: usage.{name} is not a token count")
        counts[name] = value
    if "input_tokens" not in usage or "output_tokens" not in usage:
        raise malformed(provider, "Anthropic message: usage lacks input_tokens or output_tokens")
    read, write = counts["cache_read_input_tokens"], counts["cache_creation_input_tokens"]
    return Usage(
        input_tokens=counts["input_tokens"] + read + write,
        output_tokens=counts["output_tokens"],
        cache_read_tokens=read,
        cache_write_tokens=write,
    )
