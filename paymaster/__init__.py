"""Paymaster: a runtime for AI agents that never overspends."""

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
    ScriptedProvider,
    Usage,
)
from .router import Tier, TierTable
from .runtime import Agent, Budget, Limit, Outcome, Runtime, Task, TaskStatus

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
    "RetryPolicy",
    "Runtime",
    "ScriptedProvider",
    "Subtask",
    "Task",
    "TaskStatus",
    "Tier",
    "TierTable",
    "Tool",
    "UnknownTierError",
    "Usage",
    "__version__",
    "tool",
]
