"""A deterministic provider for tests and demos: scripted replies, usage, latency and failures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import anyio

from ..pricing._tokens import count_tokens, estimate_prompt_tokens
from ._types import ModelRequest, ModelResponse, Usage

Reply = str | ModelResponse | BaseException | Callable[[ModelRequest], "str | ModelResponse"]
UsageFn = Callable[[ModelRequest, str], Usage]


@dataclass
class ScriptedCall:
    """One call the scripted provider received, with monotonic start and end times."""

    request: ModelRequest
    started: float
    finished: float = 0.0
    response: ModelResponse | None = None
    error: BaseException | None = None


_INSTRUCTION = re.compile(r"^\s*[A-Za-z ]{2,40}:\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def default_reply(request: ModelRequest) -> str:
    """A plausible, deterministic answer: the first sentence or two of the last user message."""
    user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    body = _INSTRUCTION.sub("", user, count=1).strip()
    sentences = [s for s in _SENTENCE.split(body) if s]
    return " ".join(sentences[:2]) if sentences else "(no input)"


def counted_usage(request: ModelRequest, text: str) -> Usage:
    """Usage as a real provider would report it: tiktoken counts of prompt and reply."""
    return Usage(input_tokens=estimate_prompt_tokens(request), output_tokens=count_tokens(text))


class ScriptedProvider:
    """Answers from a script instead of a model.

    ``replies`` is consumed in order; each item is a reply text, a full
    ``ModelResponse``, an exception to raise, or a function of the request.
    When the script runs out (or is a single function) ``default_reply`` or
    that function answers. Replies longer than ``max_tokens`` are cut, as a
    real model's would be, and finish with ``"length"``.

    ``serves`` maps a requested model to the model that answers for it, as a
    provider resolving an alias or a gateway substituting a model would; the
    response then names the served model. Each scripted response carries a
    request id, ``"<name>-<n>"`` for the n-th call (from 1), as a real
    provider's response header would.

    Every call is kept in ``calls`` for tests to read; ``record=False`` keeps
    none, for long runs (a benchmark, a demo service) that would otherwise
    hold every request and reply in memory.
    """

    def __init__(
        self,
        replies: Iterable[Reply] | Callable[[ModelRequest], str | ModelResponse] | None = None,
        *,
        name: str = "scripted",
        latency: float = 0.0,
        usage: Usage | UsageFn | None = None,
        serves: Mapping[str, str] | None = None,
        record: bool = True,
    ) -> None:
        if callable(replies):
            self._script: list[Reply] = []
            self._fallback: Callable[[ModelRequest], str | ModelResponse] = replies
        else:
            self._script = list(replies or [])
            self._fallback = default_reply
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self.name = name
        self.latency = latency
        self._usage = usage
        self.serves = dict(serves or {})
        self.calls: list[ScriptedCall] = []
        self._record = record
        self._count = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer ``request`` from the script after the configured latency."""
        call = ScriptedCall(request=request, started=time.monotonic())
        if self._record:
            self.calls.append(call)
        self._count += 1
        number = self._count  # taken now: concurrent calls count while this one sleeps
        reply: Reply = self._script.pop(0) if self._script else self._fallback
        try:
            if self.latency:
                await anyio.sleep(self.latency)
            if isinstance(reply, BaseException):
                raise reply
            produced = reply(request) if callable(reply) else reply
            response = produced if isinstance(produced, ModelResponse) else self._respond(request, produced, number)
        except BaseException as exc:
            call.error = exc
            call.finished = time.monotonic()
            raise
        call.response = response
        call.finished = time.monotonic()
        return response

    def _respond(self, request: ModelRequest, text: str, number: int) -> ModelResponse:
        finish = "stop"
        if count_tokens(text) > request.max_tokens:
            words = text.split()
            while words and count_tokens(" ".join(words)) > request.max_tokens:
                words = words[: max(len(words) * 3 // 4, len(words) - 50)] if len(words) > 8 else words[:-1]
            text, finish = " ".join(words), "length"
        if self._usage is None:
            usage = counted_usage(request, text)
        elif isinstance(self._usage, Usage):
            usage = self._usage
        else:
            usage = self._usage(request, text)
        return ModelResponse(
            text=text,
            usage=usage,
            model=self.serves.get(request.model, request.model),
            finish_reason=finish,
            request_id=f"{self.name}-{number}",
        )
