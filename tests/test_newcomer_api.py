"""A newcomer's stumbles in the Python API: bad caps, tier tables, approval requests, packaging."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from paymaster import (
    ApprovalRequest,
    Budget,
    ConfigurationError,
    Runtime,
    ScriptedProvider,
    Tier,
    TierTable,
    from_picos,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("field", ["usd", "retry_usd", "tokens", "steps", "tool_calls", "retries", "depth"])
def test_a_negative_cap_is_a_configuration_error_naming_the_field(field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^Budget\({field}=\.\.\.\): .*greater than or equal to 0, got"):
        Budget(**{field: -1})  # type: ignore[arg-type]


def test_tier_table_iterates_its_tiers_cheapest_first() -> None:
    table = TierTable()
    assert [t.name for t in table] == ["fast", "balanced", "deep"]
    assert len(table) == 3 and list(table) == list(table.tiers)


def test_approval_request_shows_dollars_not_pico_dollars() -> None:
    request = ApprovalRequest(
        task_id="t1", agent="refund", tenant="acme", account="task:t1", dimension="usd",
        cap=50_000_000_000, used=48_000_000_000, needed=6_000_000_000, reason="one more call",
    )  # fmt: skip
    assert (request.cap_usd, request.used_usd, request.needed_usd) == (Decimal("0.05"), Decimal("0.048"),
                                                                        Decimal("0.006"))
    assert request.shortfall_usd == Decimal("0.004")
    for text in (str(request), repr(request)):
        assert "$0.05" in text and "$0.048" in text and "$0.006" in text
        assert "50000000000" not in text and "50,000,000,000" not in text
    assert "asks for $0.004 more on task:t1" in str(request)
    steps = ApprovalRequest("t1", "refund", "acme", "task:t1", "calls", 5, 5, 1, "one more call")
    assert steps.cap_usd is None and "cap 5 calls" in str(steps)


def test_from_picos_is_public_for_reading_ledger_money() -> None:
    assert from_picos(2_500_000_000_000) == Decimal("2.5")


def _runtime(tmp_path: Path, tiers: list[Tier]) -> Runtime:
    return Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), tiers=tiers)


def test_tiers_out_of_price_order_warn(tmp_path: Path) -> None:
    deep = Tier(name="deep", provider="anthropic", model="claude-sonnet-4-6")
    fast = Tier(name="fast", provider="openai", model="gpt-4o-mini")
    with pytest.warns(UserWarning, match=r"tier 'fast' .* is listed after 'deep'.*cheapest first"):
        _runtime(tmp_path, [deep, fast]).close()


def test_a_free_baseline_tier_warns(tmp_path: Path) -> None:
    fast = Tier(name="fast", provider="openai", model="gpt-4o-mini")
    local = Tier(name="local", provider="local", model="gemma-3-270m")
    prices = tmp_path / "prices.toml"
    prices.write_text('[prices."local/gemma-3-270m"]\ninput_mtok = "0"\noutput_mtok = "0"\n')
    with pytest.warns(UserWarning) as caught:
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), tiers=[fast, local], prices=prices).close()
    messages = [str(w.message) for w in caught]
    assert any("baseline tier 'local' (listed last) costs $0" in m for m in messages)


def test_tiers_in_price_order_do_not_warn(tmp_path: Path) -> None:
    # filterwarnings = error: any warning fails this test.
    _runtime(tmp_path, [
        Tier(name="fast", provider="openai", model="gpt-4o-mini"),
        Tier(name="deep", provider="anthropic", model="claude-sonnet-4-6"),
    ]).close()  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="needs hatchling (the dev extra)")
def test_the_wheel_ships_py_typed_and_the_license(tmp_path: Path) -> None:
    # Build with the project's own build backend, as pip and `python -m build` would.
    code = f"import hatchling.build as b; print(b.build_wheel({str(tmp_path)!r}))"
    name = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    with zipfile.ZipFile(tmp_path / name) as wheel:
        files = set(wheel.namelist())
        metadata = wheel.read(next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
    assert "paymaster/py.typed" in files
    assert any(f.endswith("licenses/LICENSE") for f in files)
    import paymaster

    assert f"\nVersion: {paymaster.__version__}\n" in metadata
    assert "License-Expression: MIT" in metadata
