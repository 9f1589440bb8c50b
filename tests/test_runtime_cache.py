"""The semantic cache inside a run: hits are free rows that carry what they saved; scopes never leak."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paymaster import Agent, Runtime, ScriptedProvider, TaskStatus, tool

pytest.importorskip("faiss")
from paymaster.cache import SemanticCache
from tests.cache.helpers import WordEmbedder


class Answerer(Agent):
    name = "answerer"


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[SemanticCache]:
    with SemanticCache(tmp_path / "cache.db", embedder=WordEmbedder()) as c:
        yield c


def test_a_repeat_is_served_free_and_the_hit_row_carries_the_saving(ledger_path: Path, cache: SemanticCache) -> None:
    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        first = rt.run_sync(Answerer, "What is the refund window for annual plans?", tenant="acme")
        again = rt.run_sync(Answerer, "What is the refund window for annual plans?", tenant="acme")
        (hit,) = rt.ledger.steps(again.task_id)
    assert len(provider.calls) == 1
    assert again.status is TaskStatus.SUCCEEDED and again.output == first.output
    assert (hit.kind, hit.status, hit.cost_picos, hit.provider) == ("cache_hit", "ok", 0, "cache")
    assert first.cost_usd is not None and again.cost_usd == 0
    assert again.cache_hits == 1 and again.cached and again.cache_saved_usd == first.cost_usd
    assert hit.note is not None and hit.note.startswith("exact match")


def test_other_tenants_and_new_agent_versions_never_see_an_entry(ledger_path: Path, cache: SemanticCache) -> None:
    class Answerer2(Answerer):
        name = "answerer"
        version = "2"

    provider = ScriptedProvider()
    question = "What is the refund window for annual plans?"
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        rt.run_sync(Answerer, question, tenant="acme")
        other_tenant = rt.run_sync(Answerer, question, tenant="globex")
        new_version = rt.run_sync(Answerer2, question, tenant="acme")
    assert len(provider.calls) == 3
    assert other_tenant.cache_hits == 0 and new_version.cache_hits == 0


def test_calls_with_tools_are_not_cached(ledger_path: Path, cache: SemanticCache) -> None:
    @tool
    def clock() -> str:
        """The time now."""
        return "12:00"

    class Timed(Agent):
        name = "timed"
        tools = [clock]  # noqa: RUF012

    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        rt.run_sync(Timed, "What time is it?")
        repeat = rt.run_sync(Timed, "What time is it?")
    assert len(provider.calls) == 2 and repeat.cache_hits == 0


def test_an_agent_can_opt_out(ledger_path: Path, cache: SemanticCache) -> None:
    class Fresh(Agent):
        name = "fresh"
        cacheable = False

    provider = ScriptedProvider()
    with Runtime(ledger=ledger_path, provider=provider, cache=cache) as rt:
        rt.run_sync(Fresh, "Roll a die.")
        rt.run_sync(Fresh, "Roll a die.")
    assert len(provider.calls) == 2


@pytest.mark.model
def test_cache_true_keeps_a_real_cache_beside_the_ledger_across_restarts(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    ledger = tmp_path / "ledger.db"
    with Runtime(ledger=ledger, provider=ScriptedProvider(), cache=True) as rt:
        first = rt.run_sync(Answerer, "How long do refunds take to reach my card?", tenant="acme")
    assert (tmp_path / "ledger.cache.db").exists()
    provider = ScriptedProvider()
    with Runtime(ledger=ledger, provider=provider, cache=True) as rt:
        again = rt.run_sync(Answerer, "How long do refunds take to reach my card?", tenant="acme")
    assert provider.calls == [] and again.output == first.output and again.cached
