"""Model providers behind one narrow interface."""

from ._anthropic import AnthropicProvider
from ._openai import OpenAIProvider
from ._replay import RecordedOutcome, RecordedPrompt, ReplayProvider, dump_recordings, load_recordings
from ._scripted import ScriptedCall, ScriptedProvider, counted_usage, default_reply
from ._types import Message, ModelRequest, ModelResponse, Provider, ToolCall, ToolSpec, Usage

__all__ = [
    "AnthropicProvider",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "OpenAIProvider",
    "Provider",
    "RecordedOutcome",
    "RecordedPrompt",
    "ReplayProvider",
    "ScriptedCall",
    "ScriptedProvider",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "counted_usage",
    "default_reply",
    "dump_recordings",
    "load_recordings",
]
