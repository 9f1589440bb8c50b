"""Paymaster: a runtime for AI agents that never overspends."""

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
from .executors import ApprovalRequest, CapPolicy, RetryPolicy, Tool, tool
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
from .runtime import Agent, Budget, Limit, Outcome, Runtime, Task, TaskStatus

if TYPE_CHECKING:
    from .cache import SemanticCache

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
    "Ledger",
    "LedgerError",
    "Limit",
    "Message",
    "MissingExtraError",
    "ModelPrices",
    "ModelRequest",
    "ModelResponse",
    "OpenAIProvider",
    "Outcome",
    "PaymasterError",
    "Plan",
    "PriceBook",
    "PriceUnknownError",
    "Provider",
    "ProviderError",
    "ReplayProvider",
    "RetryPolicy",
    "Runtime",
    "ScoreRouter",
    "ScriptedProvider",
    "SemanticCache",
    "Subtask",
    "Task",
    "TaskStatus",
    "Tier",
    "TierTable",
    "Tool",
    "UnknownTierError",
    "Usage",
    "__version__",
    "from_picos",
    "tool",
]


def __getattr__(name: str) -> Any:
    # The semantic cache is imported on first use, so that `import paymaster` stays light.
    if name == "SemanticCache":
        from .cache import SemanticCache

        return SemanticCache
    raise AttributeError(f"module 'paymaster' has no attribute {name!r}")
