"""Paymaster: a runtime for AI agents that never overspends."""

import importlib
from typing import TYPE_CHECKING, Any

from ._money import from_picos
from .errors import (
    AgentDefinitionError,
    ConfigurationError,
    ConnectionDroppedError,
    LedgerError,
    MissingExtraError,
    PaymasterError,
    PriceUnknownError,
    ProviderError,
    UnknownTierError,
)

if TYPE_CHECKING:
    from .cache import SemanticCache
    from .executors import (
        ApprovalRequest,
        CapPolicy,
        Halt,
        Observer,
        Rate,
        RetryPolicy,
        TaskView,
        Tool,
        ToolPolicy,
        tool,
    )
    from .ledger import Alert, Ledger
    from .planners import Complexity, Plan, Subtask
    from .pricing import ModelPrices, PriceBook
    from .providers import (
        AnthropicProvider,
        Message,
        ModelRequest,
        ModelResponse,
        OpenAIProvider,
        Provider,
        ReplayProvider,
        ScriptedProvider,
        Usage,
    )
    from .router import ScoreRouter, Tier, TierTable
    from .runtime import Agent, Budget, Limit, Outcome, Runtime, Shadow, Task, TaskStatus
    from .telemetry import LiveAnomalies, LiveAnomaly, OpenTelemetry

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentDefinitionError",
    "Alert",
    "AnthropicProvider",
    "ApprovalRequest",
    "Budget",
    "CapPolicy",
    "Complexity",
    "ConfigurationError",
    "ConnectionDroppedError",
    "Halt",
    "Ledger",
    "LedgerError",
    "Limit",
    "LiveAnomalies",
    "LiveAnomaly",
    "Message",
    "MissingExtraError",
    "ModelPrices",
    "ModelRequest",
    "ModelResponse",
    "Observer",
    "OpenAIProvider",
    "OpenTelemetry",
    "Outcome",
    "PaymasterError",
    "Plan",
    "PriceBook",
    "PriceUnknownError",
    "Provider",
    "ProviderError",
    "Rate",
    "ReplayProvider",
    "RetryPolicy",
    "Runtime",
    "ScoreRouter",
    "ScriptedProvider",
    "SemanticCache",
    "Shadow",
    "Subtask",
    "Task",
    "TaskStatus",
    "TaskView",
    "Tier",
    "TierTable",
    "Tool",
    "ToolPolicy",
    "UnknownTierError",
    "Usage",
    "__version__",
    "from_picos",
    "tool",
]


# Where each public name lives. They are imported on first use, so `import paymaster` (and every
# `paymaster` command) starts without loading the SDKs, SQLModel or the cache's models.
_LAZY = {
    "ApprovalRequest": "executors", "CapPolicy": "executors", "RetryPolicy": "executors", "Tool": "executors",
    "ToolPolicy": "executors", "Rate": "executors",
    "tool": "executors", "Halt": "executors", "Observer": "executors", "TaskView": "executors",
    "Alert": "ledger", "Ledger": "ledger", "Complexity": "planners", "Plan": "planners",
    "Subtask": "planners", "ModelPrices": "pricing", "PriceBook": "pricing", "AnthropicProvider": "providers",
    "Message": "providers", "ModelRequest": "providers", "ModelResponse": "providers", "OpenAIProvider": "providers",
    "Provider": "providers", "ReplayProvider": "providers", "ScriptedProvider": "providers", "Usage": "providers",
    "ScoreRouter": "router", "Tier": "router", "TierTable": "router", "Agent": "runtime", "Budget": "runtime",
    "Limit": "runtime", "Outcome": "runtime", "Runtime": "runtime", "Task": "runtime", "TaskStatus": "runtime",
    "Shadow": "runtime",
    "SemanticCache": "cache", "OpenTelemetry": "telemetry",
    "LiveAnomalies": "telemetry", "LiveAnomaly": "telemetry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'paymaster' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
