"""max_tokens = "auto": holds sized by what an agent's replies really use, still a true bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from paymaster import Agent, Budget, ModelRequest, ModelResponse, Runtime, ScriptedProvider, Tier, Usage
from paymaster.errors import AgentDefinitionError

TIERS = [Tier(name="fast", provider="openai", model="gpt-4o-mini", max_tokens=1000)]


class Brief(Agent):
    name = "brief"
    max_tokens = "auto"


def _reply(output_tokens: int) -> ModelResponse:
    return ModelResponse(text="ok", usage=Usage(input_tokens=30, output_tokens=output_tokens), model="gpt-4o-mini",
                         finish_reason="stop")


def _within(request: ModelRequest, needed: int) -> ModelResponse:
    """A reply of ``needed`` tokens, or one cut at ``max_tokens`` (as a provider does) when that is fewer."""
    if request.max_tokens < needed:
        return ModelResponse(text="cut", usage=Usage(input_tokens=30, output_tokens=request.max_tokens),
                             model="gpt-4o-mini", finish_reason="length")
    return _reply(needed)


def test_auto_sizes_max_tokens_from_observed_replies_and_asks_again_when_cut(ledger_path: Path) -> None:
    def reply(request: ModelRequest) -> ModelResponse:
        prompt = request.messages[-1].content
        # "Question i?" needs 10-16 tokens (p99 16, so 24 with headroom); the long question needs 400.
        return _within(request, 400 if "long" in prompt else 10 + int(prompt.rsplit(" ", 1)[-1].rstrip("?")) % 7)

    provider = ScriptedProvider(reply)
    with Runtime(ledger=ledger_path, provider=provider, tiers=TIERS) as rt:
        for i in range(25):
            rt.run_sync(Brief, f"Question {i}?", budget=Budget(usd="1"))
        # Too little history for the first 20 calls: the tier's maximum. Then p99 x 1.5 of the replies seen.
        assert [c.request.max_tokens for c in provider.calls] == [1000] * 20 + [24] * 5
        # A reply cut at the learned limit is asked again with the tier's maximum; both are on the ledger.
        outcome = rt.run_sync(Brief, "A long question?", budget=Budget(usd="1"))
        steps = rt.ledger.steps(outcome.task_id)
    assert [s.output_tokens for s in steps] == [24, 400]
    assert steps[1].note is not None and "cut at 24" in steps[1].note
    assert steps[0].reserved_picos < steps[1].reserved_picos  # the smaller hold for the smaller limit
    assert outcome.output == "ok"


def test_max_tokens_takes_only_auto_or_none() -> None:
    with pytest.raises(AgentDefinitionError, match="max_tokens"):

        class Bad(Agent):
            name = "bad"
            max_tokens = 500  # type: ignore[assignment]


def test_auto_keeps_learning_once_its_window_of_replies_is_full(ledger_path: Path) -> None:
    from paymaster.executors._lengths import WINDOW

    lengths: list[int] = []

    def reply(request: ModelRequest) -> ModelResponse:
        return _within(request, lengths.pop(0))

    provider = ScriptedProvider(reply)
    with Runtime(ledger=ledger_path, provider=provider, tiers=TIERS) as rt:
        lengths.extend([20] * (WINDOW + 10))
        for i in range(WINDOW + 10):
            rt.run_sync(Brief, f"Question {i}?")
        assert provider.calls[-1].request.max_tokens == 30  # 20 x 1.5
        # Replies grow longer: the limit follows them (a cut reply is asked again, and both are counted).
        lengths.extend([100, 100] * 400)
        for i in range(400):
            rt.run_sync(Brief, f"Longer question {i}?")
            if provider.calls[-1].request.max_tokens == 150:
                break
    assert provider.calls[-1].request.max_tokens == 150  # 100 x 1.5, learnt after the window was full


@pytest.mark.anyio
async def test_tasks_starting_together_read_the_reply_history_once(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio

    from paymaster.executors._lengths import ReplyLengths

    reads: list[tuple[str, str, str]] = []
    history = ReplyLengths._history

    async def counted(self: ReplyLengths, key: tuple[str, str, str]) -> list[int]:
        reads.append(key)
        return await history(self, key)

    monkeypatch.setattr(ReplyLengths, "_history", counted)
    with Runtime(ledger=ledger_path, provider=ScriptedProvider(lambda r: _reply(10), latency=0.01),
                 tiers=TIERS) as rt:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(rt.run, Brief, f"Question {i}?")
    assert reads == [("brief", "execute", "fast")]
