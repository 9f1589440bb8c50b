"""A provider that answers from recorded outcomes of real models, so routers can be judged with no model calls.

A replay file is JSON Lines, one recorded prompt a line::

    {"id": "arc.12", "prompt": "...", "task_type": "arc", "outcomes": {
        "gpt-4-1106-preview": {"response": "B", "correct": true, "cost_usd": "0.00533"}, ...}}

How the ledger reproduces a recorded cost exactly: each model gets one price,
its *cost quantum* q: a whole number of pico-dollars that divides every one of
its recorded costs (the greatest common divisor, which for per-token-priced
APIs is the price of one input token; with very few recordings, a divisor of
it near the price of one token). A replayed call reports usage of ``cost / q``
tokens in all (the response's own token count as output, the rest as input)
and the model is priced at q per token for every kind of token, so tokens x
price = the recorded cost, to the pico-dollar. Recorded costs are rounded to the pico-dollar (the ledger's unit)
on load, which only drops binary-float artefacts such as 0.0005300000000000001.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._money import PICOS_PER_USD
from ..errors import BadRequestError, ConfigurationError
from ..pricing._prices import ModelPrices, PriceBook, Rates  # submodules: the package imports this one
from ..pricing._tokens import bound_prompt_tokens, count_tokens
from ._types import ModelRequest, ModelResponse, Usage

if TYPE_CHECKING:
    from ..router import TierTable

_PICO = Decimal(1) / PICOS_PER_USD
_MTOK = 1_000_000
_TIER_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """What one model answered to one prompt, whether it was right, and what it cost."""

    response: str
    correct: bool | None
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class RecordedPrompt:
    """One prompt with the recorded outcome of each model that answered it."""

    id: str
    prompt: str
    outcomes: Mapping[str, RecordedOutcome]
    task_type: str | None = None
    tags: tuple[str, ...] = field(default=())


def recorded_cost(value: object, where: str) -> Decimal:
    """Parse a recorded USD cost and round it to the pico-dollar, the ledger's unit."""
    try:
        cost = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ConfigurationError(f"{where}: cost_usd {value!r} is not a number") from None
    if not cost.is_finite() or cost < 0:
        raise ConfigurationError(f"{where}: cost_usd must be a finite number >= 0, got {value!r}")
    return cost.quantize(_PICO, rounding=ROUND_HALF_EVEN)


def _outcome(raw: object, where: str) -> RecordedOutcome:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: must be an object with response, correct and cost_usd")
    unknown = set(raw) - {"response", "correct", "cost_usd"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {sorted(unknown)}")
    response, correct = raw.get("response"), raw.get("correct")
    if not isinstance(response, str):
        raise ConfigurationError(f"{where}: response must be a string")
    if correct is not None and not isinstance(correct, bool):
        raise ConfigurationError(f"{where}: correct must be true, false or null, got {correct!r}")
    if "cost_usd" not in raw:
        raise ConfigurationError(f'{where}: cost_usd is required (write it as a string, e.g. "0.00053")')
    return RecordedOutcome(response=response, correct=correct, cost_usd=recorded_cost(raw["cost_usd"], where))


def parse_recording(raw: Mapping[str, Any], where: str) -> RecordedPrompt:
    """Validate one replay record (a decoded JSON object)."""
    unknown = set(raw) - {"id", "prompt", "task_type", "tags", "outcomes"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {sorted(unknown)}")
    prompt, outcomes = raw.get("prompt"), raw.get("outcomes")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigurationError(f"{where}: prompt must be a non-empty string")
    if not isinstance(outcomes, Mapping) or not outcomes:
        raise ConfigurationError(f"{where}: outcomes must map model names to recorded outcomes")
    task_type, tags = raw.get("task_type"), raw.get("tags", [])
    if task_type is not None and not isinstance(task_type, str):
        raise ConfigurationError(f"{where}: task_type must be a string")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigurationError(f"{where}: tags must be a list of strings")
    return RecordedPrompt(
        id=str(raw.get("id", where)),
        prompt=prompt,
        task_type=task_type,
        tags=tuple(tags),
        outcomes={str(m): _outcome(o, f"{where}: outcomes[{m!r}]") for m, o in outcomes.items()},
    )


def load_recordings(path: str | Path) -> list[RecordedPrompt]:
    """Read a replay file (JSON Lines); a bad line is an error naming its line number."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigurationError(f"replay file {p} does not exist") from None
    out: list[RecordedPrompt] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{number}"
        try:
            raw = json.loads(line, parse_float=Decimal)  # keeps recorded costs exact
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{where}: each line must be a JSON object")
        out.append(parse_recording(raw, where))
    if not out:
        raise ConfigurationError(f"replay file {p} holds no recordings")
    return out


def dump_recordings(prompts: Iterable[RecordedPrompt], path: str | Path) -> None:
    """Write recordings as a replay file (costs as exact decimal strings)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for r in prompts:
            record: dict[str, Any] = {"id": r.id, "prompt": r.prompt}
            if r.task_type is not None:
                record["task_type"] = r.task_type
            if r.tags:
                record["tags"] = list(r.tags)
            record["outcomes"] = {
                m: {"response": o.response, "correct": o.correct, "cost_usd": format(o.cost_usd.normalize(), "f")}
                for m, o in r.outcomes.items()
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def tier_name(model: str) -> str:
    """A tier name for a recorded model: its last path part with unsafe characters replaced."""
    return _TIER_NAME.sub("-", model.rsplit("/", 1)[-1]).strip("-") or "model"


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


def _quantum(costs_picos: list[int], picos_per_token: float) -> int:
    """The largest price per priced unit that divides every recorded cost and keeps units near real tokens.

    The gcd of the costs always divides them; for per-token-priced APIs it is
    the price of one input token. With few recordings the gcd can be a whole
    call's cost, so a divisor near the estimated price per token is taken
    instead: the reservation's worst case then stays close to a real one.
    """
    g = reduce(math.gcd, costs_picos) or 1
    if g <= 4 * picos_per_token:
        return g
    fitting = [d for d in _divisors(g) if d <= max(picos_per_token, 1.0)]
    return fitting[-1] if fitting else 1


def _normal(text: str) -> str:
    return " ".join(text.split())


class ReplayProvider:
    """Answers each request with the recorded response of the requested model to the same prompt.

    The prompt is the last user message (matched exactly, else with
    whitespace normalised). Price the runtime with ``price_book()`` (or add
    ``model_prices()`` to your own PriceBook) so that the ledger charges the
    recorded cost; ``tier_table()`` gives one tier per recorded model,
    cheapest first.
    """

    def __init__(self, recordings: Iterable[RecordedPrompt] | str | Path, *, name: str = "replay") -> None:
        prompts = load_recordings(recordings) if isinstance(recordings, str | Path) else list(recordings)
        if not prompts:
            raise ConfigurationError("ReplayProvider needs at least one recorded prompt")
        self.name = name
        self.prompts: tuple[RecordedPrompt, ...] = tuple(prompts)
        self._exact: dict[str, RecordedPrompt] = {}
        self._loose: dict[str, RecordedPrompt] = {}
        for r in self.prompts:
            self._exact.setdefault(r.prompt, r)
            self._loose.setdefault(_normal(r.prompt), r)
        costs: dict[str, list[int]] = {}
        per_token: dict[str, list[float]] = {}
        for r in self.prompts:
            for model, o in r.outcomes.items():
                picos = int(o.cost_usd / _PICO)
                costs.setdefault(model, []).append(picos)
                # A rough token count of the call (4 bytes a token), to keep priced units near real tokens.
                per_token.setdefault(model, []).append(picos / ((len(r.prompt.encode()) + len(o.response.encode()))
                                                                // 4 + 1))
        self._quantum = {m: _quantum(v, sorted(per_token[m])[len(v) // 2]) for m, v in costs.items()}
        mean = {m: sum(v) / len(v) for m, v in costs.items()}
        self.models: tuple[str, ...] = tuple(sorted(costs, key=lambda m: (mean[m], m)))

    def lookup(self, prompt: str) -> RecordedPrompt | None:
        """The recorded prompt matching ``prompt``, if any."""
        return self._exact.get(prompt) or self._loose.get(_normal(prompt))

    def outcome(self, model: str, prompt: str) -> RecordedOutcome | None:
        """What ``model`` answered to ``prompt`` when it was recorded."""
        found = self.lookup(prompt)
        return None if found is None else found.outcomes.get(model)

    def units(self, model: str, outcome: RecordedOutcome) -> int:
        """How many priced tokens reproduce ``outcome``'s cost for ``model``."""
        return int(outcome.cost_usd / _PICO) // self._quantum[model]

    def model_prices(self, provider: str | None = None) -> list[ModelPrices]:
        """One price per model (its cost quantum, for every kind of token), keyed by ``provider``."""
        out = []
        for model in self.models:
            rate = Decimal(self._quantum[model] * _MTOK) * _PICO  # dollars per million tokens
            out.append(ModelPrices(provider or self.name, model, Rates(rate, rate, rate, rate), source="replay"))
        return out

    def price_book(self, provider: str | None = None) -> PriceBook:
        """A PriceBook holding exactly the replayed models' prices."""
        return PriceBook({(p.provider, p.model): p for p in self.model_prices(provider)})

    def tier_table(self, models: Iterable[str] | None = None, *, min_max_tokens: int = 1024) -> TierTable:
        """Tiers for ``models`` (default all, cheapest first); max_tokens fits the longest recording."""
        # Imported here: the router imports the planners, which import the providers (an import cycle).
        from ..router import Tier, TierTable

        chosen = list(models) if models is not None else list(self.models)
        unknown = [m for m in chosen if m not in self._quantum]
        if unknown:
            raise ConfigurationError(f"no recordings for model(s) {unknown}; recorded: {list(self.models)}")
        tiers = []
        for model in chosen:
            # The reservation bounds input by the prompt's bytes; the rest must fit max_tokens.
            need = max(
                (
                    self.units(model, r.outcomes[model]) - len(r.prompt.encode())
                    for r in self.prompts
                    if model in r.outcomes
                ),
                default=0,
            )
            tiers.append(
                Tier(name=tier_name(model), provider=self.name, model=model, max_tokens=max(min_max_tokens, need))
            )
        return TierTable(tiers)

    def __iter__(self) -> Iterator[RecordedPrompt]:
        return iter(self.prompts)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Return the recorded response of ``request.model`` to the request's last user message."""
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        found = self.lookup(user)
        if found is None:
            raise BadRequestError(
                f"no recording of the prompt {user[:80]!r}; the replay holds {len(self.prompts)} prompts",
                provider=self.name,
            )
        outcome = found.outcomes.get(request.model)
        if outcome is None:
            raise BadRequestError(
                f"prompt {found.id!r} has no recorded answer from {request.model!r}; "
                f"recorded models: {sorted(found.outcomes)}",
                provider=self.name,
            )
        units = self.units(request.model, outcome)
        if units > bound_prompt_tokens(request) + request.max_tokens:
            # A real model cannot bill past max_tokens; neither may its replay, or the
            # ledger would settle more than the budget guard reserved.
            raise BadRequestError(
                f"the recorded cost of {found.id!r} on {request.model!r} ({outcome.cost_usd} USD) exceeds the "
                f"worst case of this request; raise the tier's max_tokens (tier_table() sizes it to fit)",
                provider=self.name,
            )
        output = min(count_tokens(outcome.response), units, request.max_tokens)
        usage = Usage(input_tokens=units - output, output_tokens=output)
        return ModelResponse(text=outcome.response, usage=usage, model=request.model, finish_reason="stop")
