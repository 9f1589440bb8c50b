"""Run a golden set through the runtime: every item is a real task, scored, with its cost from the ledger."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..providers._replay import ReplayProvider
from ..router._cascade import STAGES
from ..runtime import Agent, Budget, Runtime, TaskStatus
from ._golden import GoldenItem
from ._metrics import SelectionRow, Summary, model_selection, split_by, summarise
from ._scorers import Recorded, Verdict, score

_ANSWERING_KINDS = ("execute", "retry")
_CHECK_STAGE = STAGES[1]  # a cascade's check answers too, but its answer is never the output


@dataclass(frozen=True)
class ItemResult:
    """One golden item's run: its task, status, output, verdict, cost and the tiers that answered."""

    item: GoldenItem
    task_id: str
    status: TaskStatus
    output: str
    verdict: Verdict
    cost_usd: Decimal | None
    tiers: tuple[str, ...]
    models: tuple[str, ...]
    stop_reason: str | None = None

    @property
    def correct(self) -> bool:
        """Right answer from a task that finished normally."""
        return self.status is TaskStatus.SUCCEEDED and self.verdict.correct

    @property
    def tier(self) -> str:
        """The tier whose call gave the final answer ('-' when no call succeeded)."""
        return self.tiers[-1] if self.tiers else "-"

    @property
    def model(self) -> str:
        """The model whose call gave the final answer ('-' when no call succeeded)."""
        return self.models[-1] if self.models else "-"


@dataclass(frozen=True)
class EvalReport:
    """A golden set's results: accuracy, cost, cost per success, tier split and model selection."""

    agent: str
    golden: str
    results: tuple[ItemResult, ...]

    @property
    def summary(self) -> Summary:
        """Accuracy and total cost (unknown when any call had no price)."""
        return summarise((r.correct for r in self.results), (r.cost_usd for r in self.results))

    def tier_split(self) -> list[tuple[str, Summary]]:
        """Results by the tier that answered."""
        return split_by([r.tier for r in self.results], [r.correct for r in self.results],
                        [r.cost_usd for r in self.results])

    def selection(self) -> list[SelectionRow]:
        """Which models answered which task types, at what accuracy and cost."""
        return model_selection(
            [r.item.task_type or "-" for r in self.results], [r.model for r in self.results],
            [r.correct for r in self.results], [r.cost_usd for r in self.results],
        )

    def failures(self) -> list[ItemResult]:
        """Items not answered correctly, in golden-set order."""
        return [r for r in self.results if not r.correct]


async def run_item(
    runtime: Runtime,
    agent: type[Agent],
    item: GoldenItem,
    *,
    tenant: str = "eval",
    tags: Mapping[str, str] | None = None,
    replay: ReplayProvider | None = None,
    budget: Budget | None = None,
) -> ItemResult:
    """Run one item as a task (under ``budget`` when given, else the agent's) and score its output."""
    outcome = await runtime.run(agent, item.input, tenant=tenant, tags={**(tags or {}), **item.tags}, budget=budget)
    steps = [s for s in runtime.ledger.steps(outcome.task_id)
             if s.kind in _ANSWERING_KINDS and s.status == "ok" and _CHECK_STAGE not in (s.note or "")]
    tiers = tuple(s.tier or "-" for s in steps)
    models = tuple(s.model or "-" for s in steps)
    recorded = None
    if isinstance(item.scorer, Recorded) and replay is not None and models:
        found = replay.outcome(models[-1], item.input)
        recorded = found.correct if found is not None else None
    if outcome.status is TaskStatus.SUCCEEDED:
        verdict = score(item.scorer, outcome.output, expected=item.expected, recorded=recorded)
    else:
        verdict = Verdict(False, f"task {outcome.status.value}: {outcome.stop_reason}")
    return ItemResult(
        item=item, task_id=outcome.task_id, status=outcome.status, output=outcome.output, verdict=verdict,
        cost_usd=outcome.cost_usd, tiers=tiers, models=models, stop_reason=outcome.stop_reason,
    )


async def run_golden(
    runtime: Runtime,
    agent: type[Agent],
    items: Sequence[GoldenItem],
    *,
    golden: str = "golden set",
    tenant: str = "eval",
    tags: Mapping[str, str] | None = None,
    replay: ReplayProvider | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
    budget: Budget | None = None,
) -> EvalReport:
    """Run every item in order (one at a time, so the same inputs give the same numbers)."""
    results = []
    for item in items:
        result = await run_item(runtime, agent, item, tenant=tenant, tags=tags, replay=replay, budget=budget)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return EvalReport(agent=agent.name, golden=golden, results=tuple(results))
