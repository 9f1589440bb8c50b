"""Bad definitions fail at definition or construction, with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymaster import (
    Agent,
    AgentDefinitionError,
    Budget,
    ConfigurationError,
    PriceUnknownError,
    Runtime,
    ScriptedProvider,
    Tier,
    UnknownTierError,
)


def test_agent_without_a_name_fails_at_definition() -> None:
    with pytest.raises(AgentDefinitionError, match=r"needs a class attribute `name`.*name = \"refund\""):

        class Nameless(Agent):
            pass


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "has space"}, "needs a class attribute `name`"),
        ({"name": "ok", "version": 3}, "version must be a non-empty string"),
        ({"name": "ok", "budget": {"usd": "1"}}, "budget must be a paymaster.Budget"),
        ({"name": "ok", "complexity": "hard"}, "complexity must be one of"),
        ({"name": "ok", "routes": {"trivial": "fast"}}, "routes keys must be complexities"),
    ],
)
def test_malformed_agent_attributes_fail_at_definition(attrs: dict[str, object], message: str) -> None:
    with pytest.raises(AgentDefinitionError, match=message):
        type("Broken", (Agent,), attrs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usd": "-1"}, "greater than or equal to 0"),
        ({"usd": "ten dollars"}, "valid decimal"),
        ({"usd": "NaN"}, "finite"),
        ({"tokens": -5}, "greater than or equal to 0"),
        ({"steps": 2.5}, "valid integer"),
        ({"dollars": 1}, r"Budget\(dollars=...\) is not a cap; the caps are usd, tokens"),
    ],
)
def test_bad_caps_fail_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_float_dollars_keep_the_written_value() -> None:
    assert str(Budget(usd=0.1).usd) == "0.1"


def test_unknown_tier_in_runtime_routes_fails_at_construction(ledger_path: Path) -> None:
    known = r"unknown tier 'premium'; known tiers are \['fast', 'balanced', 'deep'\]"
    with pytest.raises(UnknownTierError, match=known):
        Runtime(ledger=ledger_path, provider=ScriptedProvider(), routes={"complex": "premium"})


def test_unknown_tier_in_agent_routes_fails_before_anything_runs(ledger_path: Path) -> None:
    class Picky(Agent):
        name = "picky"
        routes = {"moderate": "turbo"}  # noqa: RUF012

    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider) as rt:
        with pytest.raises(UnknownTierError, match="unknown tier 'turbo'"):
            rt.run_sync(Picky, "hello")
        assert rt.ledger.tasks() == []
    assert provider.calls == []


def test_usd_cap_on_an_unpriced_model_is_a_clear_error(ledger_path: Path) -> None:
    class Capped(Agent):
        name = "capped"
        budget = Budget(usd="1")

    tiers = [Tier(name="mine", provider="local", model="my-finetune")]
    fix = r'price of local/my-finetune .* is unknown.*\[prices\."local/my-finetune"\]'
    with (
        Runtime(ledger=ledger_path, provider=ScriptedProvider(), tiers=tiers) as rt,
        pytest.raises(PriceUnknownError, match=fix),
    ):
        rt.run_sync(Capped, "hello")


def test_missing_provider_names_what_to_configure(ledger_path: Path) -> None:
    class Plain(Agent):
        name = "plain"

    with Runtime(ledger=ledger_path) as rt, pytest.raises(ConfigurationError, match="set OPENAI_API_KEY, or pass"):
        rt.run_sync(Plain, "hello")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"input": ""}, "non-empty string"),
        ({"tenant": ""}, "tenant must be a non-empty string"),
        ({"tags": {"team": 7}}, "tags must map strings to strings"),
    ],
)
def test_bad_run_arguments_are_rejected(ledger_path: Path, call: dict[str, object], message: str) -> None:
    class Plain(Agent):
        name = "plain"

    args: dict[str, object] = {"input": "hello", **call}
    with (
        Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt,
        pytest.raises(ConfigurationError, match=message),
    ):
        rt.run_sync(Plain, **args)  # type: ignore[arg-type]


def test_passing_an_agent_instance_is_rejected(ledger_path: Path) -> None:
    class Plain(Agent):
        name = "plain"

    with Runtime(ledger=ledger_path, provider=ScriptedProvider()) as rt, pytest.raises(
        ConfigurationError, match="Agent subclass"
    ):
        rt.run_sync(Plain(), "hello")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[tiers.fast]\nprovider = 'openai'\n", "tier 'fast' is invalid"),
        ("[tiers.fast]\nprovider = 'openai'\nmodel = 'gpt-4o-mini'\nmax_tokens = 0\n", "greater than 0"),
        ("[prices.'nomodel']\ninput_mtok = '1'\noutput_mtok = '1'\n", "must be a table named \"provider/model\""),
        ("[prices.'a/b']\ninput_mtok = '-1'\noutput_mtok = '1'\n", "price must be a finite number >= 0"),
        ("[routes]\nsimple = 'nope'\n", "unknown tier 'nope'"),
        ("not toml = = =", "is not valid TOML"),
    ],
)
def test_bad_config_files_fail_at_construction(tmp_path: Path, toml: str, message: str) -> None:
    config = tmp_path / "paymaster.toml"
    config.write_text(toml)
    with pytest.raises(ConfigurationError, match=message):
        Runtime(ledger=tmp_path / "l.db", provider=ScriptedProvider(), config=config)


def test_a_ledger_from_an_older_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import sqlite3

    from paymaster import Ledger, LedgerError

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY, cap_picos INTEGER)")
    with pytest.raises(LedgerError, match=r"older Paymaster and lacks accounts\.cap_tokens.*new file"):
        Ledger(path)
