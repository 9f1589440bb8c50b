"""Pins the public API: a change here is a deliberate change for users."""

import paymaster

EXPORTED = {
    "Agent", "AgentDefinitionError", "Budget", "Complexity", "ConfigurationError", "Ledger", "LedgerError",
    "Message", "MissingExtraError", "ModelPrices", "ModelRequest", "ModelResponse", "Outcome", "PaymasterError",
    "Plan", "PriceBook", "PriceUnknownError", "Provider", "ProviderError", "Runtime", "ScriptedProvider",
    "Subtask", "Task", "TaskStatus", "Tier", "TierTable", "UnknownTierError", "Usage", "__version__",
    "ApprovalRequest", "CapPolicy",
    "AnthropicProvider", "OpenAIProvider", "RetryPolicy", "Tool", "tool", "Alert", "Limit",
    "ConnectionDroppedError",
}


def test_public_api_is_exactly_the_documented_names() -> None:
    assert set(paymaster.__all__) == EXPORTED
    for name in paymaster.__all__:
        assert getattr(paymaster, name) is not None
