"""OpenAI, and any server that speaks its Chat Completions API, through the official ``openai`` SDK.

Wire decisions:

- Chat Completions, the API that vLLM, llama.cpp's server, llama-cpp-python
  and Ollama implement. ``base_url`` points the provider at such a server and
  ``name`` names it (``"local"``), so its prices are looked up under that name.
- The output cap is ``max_completion_tokens`` for OpenAI itself (reasoning
  models reject ``max_tokens``) and ``max_tokens`` for a server given by
  ``base_url`` (compatible servers honour that one, and may silently ignore the
  other, which would leave output, and so spend, unbounded). Override with
  ``max_tokens_param``.
- Structured output is ``response_format: json_schema``; ``strict`` is set only
  when the schema meets strict mode's rules (every object closed with
  ``additionalProperties: false`` and every property required), since OpenAI
  rejects strict requests with any other schema. Servers that only know
  ``json_object`` with a ``schema`` beside it (llama-cpp-python's server) get
  that form with ``structured_output="json_object"``.
- OpenAI caches prompt prefixes by itself; ``cache_prefix`` needs no marking.
  Usage: ``prompt_tokens`` already includes ``cached_tokens`` (and
  ``cache_write_tokens``, where a server reports them), so they are subsets,
  never added again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..errors import BadRequestError, ConfigurationError, PaymasterError, ProviderError
from ._clients import LoopClients, auth_hint, check_base_url, resolve_api_key, served_model
from ._errors import SdkErrorTypes, error_in, malformed, redact, translate
from ._logs import redact_logs
from ._types import Message, ModelRequest, ModelResponse, ToolCall, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI, Timeout
    from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam
    from openai.types.chat.completion_create_params import ResponseFormat
    from openai.types.shared_params import FunctionDefinition

DEFAULT_TIMEOUT = 600.0
"""Seconds per attempt."""

SCHEMA_NAME = "output"
"""Name given to the JSON schema in ``response_format``."""

REQUEST_ID_HEADER = "x-request-id"
"""The response header carrying OpenAI's id for the call."""

_ENV_KEY = "OPENAI_API_KEY"


class OpenAIProvider:
    """OpenAI models, or any OpenAI-compatible server by ``base_url``, through ``openai.AsyncOpenAI``.

    The key comes from ``api_key``, else the environment variable ``api_key_env``,
    else ``OPENAI_API_KEY`` unless ``base_url`` is given (an OpenAI key is never
    sent to another server by accident; a local server needs no key). A missing
    key for OpenAI itself is a ``ConfigurationError`` on the first call. The
    SDK's own retries are off: Paymaster retries, so every attempt is budgeted.
    """

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None = None,
        api_key_env: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        client: AsyncOpenAI | None = None,
        max_tokens_param: Literal["max_completion_tokens", "max_tokens"] | None = None,
        structured_output: Literal["json_schema", "json_object"] = "json_schema",
    ) -> None:
        import openai  # imported here, not at module level: it takes a while to load

        self.name = name
        self.base_url = check_base_url(
            base_url, owner="OpenAIProvider", example="http://127.0.0.1:8000/v1", secrets=[api_key or ""]
        )
        self.max_tokens_param = max_tokens_param or ("max_tokens" if base_url else "max_completion_tokens")
        self.structured_output = structured_output
        self._sdk = openai
        self._errors = SdkErrorTypes(
            timeout=openai.APITimeoutError,
            connection=openai.APIConnectionError,
            status=openai.APIStatusError,
            validation=openai.APIResponseValidationError,
        )
        self._clients = LoopClients(self._new_client)
        self._given = client.with_options(max_retries=0) if client is not None else None
        if client is not None:
            self._timeout: float | Timeout | None = timeout if timeout is not None else client.timeout
            self._secrets: tuple[str, ...] = tuple(s for s in (client.api_key, client.admin_api_key) if s)
            self._missing_key, self._key, self._hint = "", "", auth_hint(type(self).__name__, "", True)
            redact_logs(self._secrets)
            return
        key, env = resolve_api_key(api_key, api_key_env, base_url=base_url, default_env=_ENV_KEY)
        seconds = timeout or DEFAULT_TIMEOUT
        self._timeout = openai.Timeout(seconds, connect=min(seconds, 10.0))
        self._secrets = (key,) if key else ()
        # A server named by URL may need no key; the provider's own API without one is a configuration error.
        self._missing_key = "" if key or (base_url and not api_key_env) else env
        self._key = key or "no-key-configured"  # the SDK insists on some credential
        self._hint = auth_hint(type(self).__name__, env, key is not None)
        redact_logs(self._secrets)  # the SDKs log headers at DEBUG; an echoed key must not reach a log

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self.name!r}, base_url={self.base_url!r})"

    def _get_client(self) -> AsyncOpenAI:
        if self._given is not None:
            return self._given
        if self._missing_key:
            raise ConfigurationError(
                f"{self.name}: no OpenAI API key; set the {self._missing_key} environment variable "
                "or pass OpenAIProvider(api_key=...)"
            )
        return self._clients.get()

    def _new_client(self) -> AsyncOpenAI:
        try:
            client = self._sdk.AsyncOpenAI(
                api_key=self._key, base_url=self.base_url, timeout=self._timeout, max_retries=0
            )
        except Exception as exc:  # the SDK or httpx refusing its settings; nothing was sent
            raise ConfigurationError(
                redact(f"{self.name}: the OpenAI SDK refused this provider's settings: {exc}", self._secrets)
            ) from exc
        # Making a client imports the HTTP transport, whose loggers exist only from then on.
        redact_logs(self._secrets)
        return client

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send ``request`` to Chat Completions and return text, tool calls and the reported usage."""
        client = self._get_client()
        messages = build_messages(request, provider=self.name)
        tools = build_tools(request)
        response_format = build_response_format(request) if self.structured_output == "json_schema" else None
        extra: dict[str, Any] | None = None
        if request.json_schema is not None and self.structured_output == "json_object":
            # This form is no part of OpenAI's typed API, so it goes in as extra body.
            extra = {"response_format": json_object_format(request)}
        omit = self._sdk.omit
        cap = request.max_tokens
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=request.model,
                messages=messages,
                max_completion_tokens=cap if self.max_tokens_param == "max_completion_tokens" else omit,
                max_tokens=cap if self.max_tokens_param == "max_tokens" else omit,
                tools=tools or omit,
                response_format=response_format or omit,
                extra_body=extra,
                timeout=self._timeout,
            )
            data = raw.http_response.json()
        except PaymasterError:
            raise
        except Exception as exc:  # the SDK's, httpx's, or a body that is not JSON: none leaves untranslated
            raise self._translate(exc) from exc
        request_id = raw.http_response.headers.get(REQUEST_ID_HEADER)
        try:
            return parse_response(data, request, provider=self.name, secrets=self._secrets, request_id=request_id)
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


def build_messages(request: ModelRequest, *, provider: str = "openai") -> list[ChatCompletionMessageParam]:
    """Chat Completions messages for ``request``: system first, tool calls and results by id."""
    out: list[ChatCompletionMessageParam] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for m in request.messages:
        out.append(_message(m, provider))
    return out


def _message(m: Message, provider: str) -> ChatCompletionMessageParam:
    if m.role == "system":
        return {"role": "system", "content": m.content}
    if m.role == "user":
        return {"role": "user", "content": m.content}
    if m.role == "tool":
        if not m.tool_call_id:
            raise BadRequestError(
                f"{provider}: a tool message needs the tool_call_id of the call it answers", provider=provider
            )
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    if not m.tool_calls:
        return {"role": "assistant", "content": m.content}
    return {
        "role": "assistant",
        "content": m.content or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in m.tool_calls
        ],
    }


def build_tools(request: ModelRequest) -> list[ChatCompletionFunctionToolParam]:
    """Function-tool definitions for the request's tools."""
    tools: list[ChatCompletionFunctionToolParam] = []
    for t in request.tools:
        function: FunctionDefinition = {"name": t.name, "parameters": t.parameters}
        if t.description:
            function["description"] = t.description
        tools.append({"type": "function", "function": function})
    return tools


def build_response_format(request: ModelRequest) -> ResponseFormat | None:
    """``response_format`` for a structured-output request, strict when the schema allows it."""
    if request.json_schema is None:
        return None
    return {
        "type": "json_schema",
        "json_schema": {
            "name": SCHEMA_NAME,
            "schema": request.json_schema,
            "strict": is_strict_schema(request.json_schema),
        },
    }


def json_object_format(request: ModelRequest) -> dict[str, Any]:
    """``response_format`` as ``json_object`` with the schema beside it, for servers that constrain on that."""
    return {"type": "json_object", "schema": request.json_schema}


def is_strict_schema(schema: object) -> bool:
    """True when every object in ``schema`` is closed and requires all its properties (strict mode's rules)."""
    if not isinstance(schema, Mapping):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, Mapping):
        if schema.get("additionalProperties") is not False:
            return False
        names = set(properties) if isinstance(properties, Mapping) else set()
        if set(schema.get("required") or ()) != names:
            return False
    children: list[object] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            children.extend(schema[key].values())
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        if isinstance(schema.get(key), list):
            children.extend(schema[key])
    children.append(schema.get("items"))
    return all(is_strict_schema(child) for child in children)


def parse_response(
    data: object,
    request: ModelRequest,
    *,
    provider: str,
    secrets: tuple[str, ...] = (),
    request_id: str | None = None,
) -> ModelResponse:
    """Turn a Chat Completions response body into a ``ModelResponse``; anything off-format is malformed.

    The model is the one the body names (what served, and so what is billed), else the requested one.
    """
    if not isinstance(data, Mapping):
        raise malformed(provider, "chat completion: body is not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise malformed(provider, f"chat completion: no choices{error_in(data)}", secrets)
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        raise malformed(provider, "chat completion: choice without a message")
    calls = tuple(_tool_call(call, i, provider) for i, call in enumerate(message.get("tool_calls") or ()))
    finish = choices[0].get("finish_reason")
    text = message.get("content")
    if not text and message.get("refusal"):
        text, finish = message["refusal"], "refusal"
    return ModelResponse(
        text=text if isinstance(text, str) else "",
        usage=parse_usage(data.get("usage"), provider=provider),
        model=served_model(data, request),
        tool_calls=calls,
        finish_reason=finish if isinstance(finish, str) else None,
        request_id=request_id or None,
    )


def _tool_call(call: object, index: int, provider: str) -> ToolCall:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(call, Mapping) or not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise malformed(provider, "chat completion: tool call without a function name")
    raw: Any = function.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        arguments = None
    if not isinstance(arguments, Mapping):
        raise malformed(provider, f"chat completion: arguments of tool call {function['name']!r} are not a JSON object")
    # Some compatible servers leave out ids; the tool result must still name its call.
    return ToolCall(id=str(call.get("id") or f"call_{index}"), name=function["name"], arguments=dict(arguments))


def parse_usage(usage: object, *, provider: str) -> Usage:
    """OpenAI usage to ``Usage``: cached (and written) prompt tokens are subsets of ``prompt_tokens``."""
    if not isinstance(usage, Mapping):
        raise malformed(provider, "chat completion: no usage")
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    prompt = _count(usage.get("prompt_tokens"), "prompt_tokens", provider, required=True)
    output = _count(usage.get("completion_tokens"), "completion_tokens", provider, required=True)
    read = min(_count(details.get("cached_tokens"), "cached_tokens", provider), prompt)
    write = min(_count(details.get("cache_write_tokens"), "cache_write_tokens", provider), prompt - read)
    return Usage(input_tokens=prompt, output_tokens=output, cache_read_tokens=read, cache_write_tokens=write)


def _count(value: object, field: str, provider: str, *, required: bool = False) -> int:
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise malformed(provider, f"chat completion: usage.{field} is not a token count")
    return value
