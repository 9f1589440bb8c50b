"""Pins the public API: a change here is a deliberate change for users."""

import subprocess
import sys
from pathlib import Path

import paymaster

EXPORTED = {
    "Agent", "AgentDefinitionError", "Budget", "Complexity", "ConfigurationError", "Ledger", "LedgerError",
    "Message", "MissingExtraError", "ModelPrices", "ModelRequest", "ModelResponse", "Observer", "Outcome",
    "PaymasterError",
    "Plan", "PriceBook", "PriceUnknownError", "Provider", "ProviderError", "Runtime", "ScriptedProvider",
    "Subtask", "Task", "TaskStatus", "TaskView", "Tier", "TierTable", "UnknownTierError", "Usage", "__version__",
    "ApprovalRequest", "CapPolicy",
    "AnthropicProvider", "OpenAIProvider", "RetryPolicy", "Tool", "ToolPolicy", "tool", "Alert", "Limit",
    "ConnectionDroppedError", "Rate",
    "Halt",
    "OpenTelemetry", "LiveAnomalies", "LiveAnomaly",
    "ScoreRouter", "SemanticCache", "ReplayProvider", "from_picos", "Shadow",
}


def test_public_api_is_exactly_the_documented_names() -> None:
    assert set(paymaster.__all__) == EXPORTED
    for name in paymaster.__all__:
        assert getattr(paymaster, name) is not None


def test_importing_paymaster_leaves_the_cache_and_its_extra_unloaded() -> None:
    # SemanticCache is exported lazily: `import paymaster` must work without the `cache` extra.
    code = (
        "import sys, paymaster\n"
        "heavy = ('paymaster.cache', 'torch', 'faiss', 'sentence_transformers')\n"
        "heavy = sorted(m for m in heavy if m in sys.modules)\n"
        "print(heavy)\n"
        "from paymaster import SemanticCache\n"
        "print(SemanticCache.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "paymaster.cache._cache"]


def test_every_subpackage_imports_on_its_own() -> None:
    # `from paymaster.pricing import PriceBook` as a program's first import once failed on an import cycle.
    subpackages = sorted(p.parent.name for p in Path(paymaster.__file__).parent.glob("*/__init__.py"))
    assert "pricing" in subpackages and "providers" in subpackages
    for name in subpackages:
        run = subprocess.run([sys.executable, "-c", f"import paymaster.{name}"], capture_output=True, text=True)
        assert run.returncode == 0, f"import paymaster.{name}: {run.stderr[-500:]}"
