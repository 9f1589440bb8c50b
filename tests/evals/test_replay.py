"""The replay provider: recorded answers, and a ledger cost equal to the recorded cost to the pico-dollar."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from paymaster import Agent, Budget, Runtime, TaskStatus
from paymaster._money import from_picos
from paymaster.errors import ConfigurationError
from paymaster.providers._replay import (
    RecordedOutcome,
    RecordedPrompt,
    ReplayProvider,
    dump_recordings,
    load_recordings,
    tier_name,
)

from .helpers import synthetic


class Echo(Agent):
    name = "replay-echo"
    instructions = "Answer with one letter."
    budget = Budget(usd="1.00")


class Uncapped(Agent):
    name = "replay-uncapped"


def recordings() -> list[RecordedPrompt]:
    # Real RouterBench-style costs: float artefacts included, per-token prices of $10 and $0.6 per million.
    costs = {"gpt-4-1106-preview": ["0.00533", "0.005019999999999999", "0.0123"],
             "mistralai/mixtral-8x7b-chat": ["0.00031919999999999995", "0.0003006", "0.0000006"]}
    return [
        RecordedPrompt(
            id=f"p{i}", prompt=f"Question {i}: which letter?",
            outcomes={m: RecordedOutcome(response="B" if i else "The answer is A", correct=bool(i % 2),
                                         cost_usd=Decimal(c[i]).quantize(Decimal("1e-12")))
                      for m, c in costs.items()},
        )
        for i in range(3)
    ]


@pytest.mark.anyio
async def test_the_ledger_charges_exactly_the_recorded_cost(tmp_path: Path) -> None:
    replay = ReplayProvider(recordings())
    tiers = replay.tier_table()
    assert [t.name for t in tiers.tiers] == ["mixtral-8x7b-chat", "gpt-4-1106-preview"]  # cheapest first
    with Runtime(ledger=tmp_path / "l.db", provider=replay, tiers=tiers, prices=replay.price_book(),
                 routes={"moderate": "gpt-4-1106-preview"}) as runtime:
        expected_total = Decimal(0)
        for r in replay.prompts:
            outcome = await runtime.run(Echo, r.prompt)
            assert outcome.status is TaskStatus.SUCCEEDED
            recorded = r.outcomes["gpt-4-1106-preview"]
            assert outcome.output == recorded.response
            assert outcome.cost_usd == recorded.cost_usd  # exact, not approximately
            [step] = runtime.ledger.steps(outcome.task_id)
            assert step.cost_picos is not None and from_picos(step.cost_picos) == recorded.cost_usd
            assert step.cost_picos <= step.reserved_picos  # the recorded cost fit the reservation
            expected_total += recorded.cost_usd
        assert expected_total == Decimal("0.02265")  # 0.00533 + 0.00502 (float artefact rounded away) + 0.0123


def test_prices_are_the_cost_quantum_and_usage_reproduces_each_cost() -> None:
    replay = ReplayProvider(recordings())
    prices = {p.model: p for p in replay.model_prices()}
    assert prices["gpt-4-1106-preview"].base.input == Decimal(10)  # $10 per million tokens, as GPT-4 Turbo
    assert prices["mistralai/mixtral-8x7b-chat"].base.input == Decimal("0.6")
    assert all(p.provider == "replay" and p.source == "replay" for p in prices.values())
    for r in replay.prompts:
        for model, outcome in r.outcomes.items():
            assert replay.units(model, outcome) * prices[model].base.input / 1_000_000 == outcome.cost_usd


@pytest.mark.anyio
async def test_unknown_prompts_and_models_fail_the_task_with_a_clear_reason(tmp_path: Path) -> None:
    replay = ReplayProvider(recordings())
    with Runtime(ledger=tmp_path / "l.db", provider=replay, tiers=replay.tier_table(),
                 prices=replay.price_book()) as runtime:
        outcome = await runtime.run(Echo, "A question nobody recorded")
        assert outcome.status is TaskStatus.FAILED
        assert outcome.stop_reason is not None and "no recording of the prompt" in outcome.stop_reason
    only_gpt4 = [RecordedPrompt("x", "Q?", {"gpt-4": RecordedOutcome("A", True, Decimal("0.001"))})]
    other = [RecordedPrompt("y", "Other?", {"small": RecordedOutcome("A", True, Decimal("0.001"))})]
    replay = ReplayProvider(only_gpt4 + other)
    with Runtime(ledger=tmp_path / "m.db", provider=replay, tiers=replay.tier_table(),
                 prices=replay.price_book(), routes={"moderate": "small"}) as runtime:
        outcome = await runtime.run(Uncapped, "Q?")
        assert outcome.stop_reason is not None and "has no recorded answer from 'small'" in outcome.stop_reason


def test_whitespace_differences_still_match() -> None:
    replay = ReplayProvider(recordings())
    assert replay.lookup("Question 1:   which\nletter?") is replay.prompts[1]
    assert replay.outcome("gpt-4-1106-preview", "Question 2: which letter?") is not None
    assert replay.lookup("Question 9") is None


def test_replay_files_round_trip_and_bad_lines_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    data = synthetic(5)
    dump_recordings(data, path)
    assert load_recordings(path) == data
    good = path.read_text().splitlines()[0]
    bad_lines = {
        "{oops": "not valid JSON",
        '{"prompt": "x"}': "outcomes must map model names",
        '{"prompt": "x", "outcomes": {"m": {"response": "a", "correct": 1, "cost_usd": "0.1"}}}': "correct must be",
        '{"prompt": "x", "outcomes": {"m": {"response": "a", "correct": true}}}': "cost_usd is required",
        '{"prompt": "x", "outcomes": {"m": {"response": "a", "correct": true, "cost_usd": "-1"}}}': ">= 0",
        '{"prompt": "x", "outcomes": {"m": {"response": "a", "cost_usd": "1", "tokens": 3}}}': "unknown field",
    }
    for line, message in bad_lines.items():
        path.write_text(good + "\n" + line + "\n")
        with pytest.raises(ConfigurationError, match=message) as info:
            load_recordings(path)
        assert f"{path}:2" in str(info.value)


def test_json_costs_are_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    record = {"prompt": "x", "outcomes": {"m": {"response": "a", "correct": True, "cost_usd": 0.1}}}
    path.write_text(json.dumps(record) + "\n")
    [loaded] = load_recordings(path)
    assert loaded.outcomes["m"].cost_usd == Decimal("0.1")


def test_tier_names_are_valid_and_max_tokens_fits_the_longest_recording() -> None:
    assert tier_name("meta/llama-2-70b-chat") == "llama-2-70b-chat"
    assert tier_name("org/model v2!") == "model-v2"
    long = [RecordedPrompt("p", "hi", {"m": RecordedOutcome("x", True, Decimal("0.005"))})]
    replay = ReplayProvider(long)
    [tier] = replay.tier_table().tiers
    assert tier.max_tokens >= replay.units("m", long[0].outcomes["m"]) - len(b"hi")
    with pytest.raises(ConfigurationError, match="no recordings for model"):
        replay.tier_table(["nope"])
