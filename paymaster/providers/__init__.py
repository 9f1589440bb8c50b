"""Model providers behind one narrow interface."""

from ._scripted import ScriptedCall, ScriptedProvider, counted_usage, default_reply
from ._types import Message, ModelRequest, ModelResponse, Provider, ToolCall, ToolSpec, Usage

__all__ = [
    "Message",
    "ModelRequest",
    "ModelResponse",
    "Provider",
    "ScriptedCall",
    "ScriptedProvider",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "counted_usage",
    "default_reply",
]
