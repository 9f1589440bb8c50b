"""Paymaster: a runtime for AI agents that never overspends."""

from .errors import (
    AgentDefinitionError,
    ConfigurationError,
    LedgerError,
    MissingExtraError,
    PaymasterError,
    PriceUnknownError,
    ProviderError,
    UnknownTierError,
)
from .ledger import Ledger
from .planners import Complexity, Plan, Subtask
from .pricing import ModelPrices, PriceBook
from .providers import Message, ModelRequest, ModelResponse, Provider, ScriptedProvider, Usage
from .router import Tier, TierTable
from .runtime import Agent, Budget, Outcome, Runtime, Task, TaskStatus

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentDefinitionError",
    "Budget",
    "Complexity",
    "ConfigurationError",
    "Ledger",
    "LedgerError",
    "Message",
    "MissingExtraError",
    "ModelPrices",
    "ModelRequest",
    "ModelResponse",
    "Outcome",
    "PaymasterError",
    "Plan",
    "PriceBook",
    "PriceUnknownError",
    "Provider",
    "ProviderError",
    "Runtime",
    "ScriptedProvider",
    "Subtask",
    "Task",
    "TaskStatus",
    "Tier",
    "TierTable",
    "UnknownTierError",
    "Usage",
    "__version__",
]
