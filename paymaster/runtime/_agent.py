"""The Agent base class: users subclass it and set class attributes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from ..errors import AgentDefinitionError, ConfigurationError
from ..executors import CapPolicy, Rate, Tool
from ..ledger._economics import parse_human_cost
from ..planners import LLMPlanner, Plan, Planner, SingleStepPlanner, is_simple
from ..planners._plan import Complexity
from ._budget import Budget

PLANNERS: dict[str, Callable[[], Planner]] = {
    "single": SingleStepPlanner,
    "llm": LLMPlanner,
    "auto": lambda: LLMPlanner(skip_if=is_simple),  # skip the planner call for short, single-step inputs
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Agent:
    """Base class of every agent; subclass it and set at least ``name``.

    Class attributes are checked when the subclass is defined, so a typo fails
    at import, not mid-run. Run state never lives on the agent: the runtime
    makes a fresh instance per task, so one agent class can run many tasks
    at once.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    instructions: ClassVar[str] = "You are a careful assistant. Answer accurately and concisely."
    budget: ClassVar[Budget] = Budget()
    complexity: ClassVar[Complexity] = Complexity.MODERATE
    routes: ClassVar[Mapping[Complexity, str]] = {}
    on_cap: ClassVar[Sequence[CapPolicy | str]] = (CapPolicy.HALT,)
    tools: ClassVar[Sequence[Tool | Callable[..., Any]]] = ()
    planner: ClassVar[Planner | str | None] = None
    fixed_plan: ClassVar[Plan | None] = None
    max_subtasks: ClassVar[int] = 8
    planner_tier: ClassVar[str | None] = None
    summarise_over: ClassVar[int | None] = 6_000
    cacheable: ClassVar[bool] = True
    role: ClassVar[str | None] = None
    """What the agent is, for tool policies (``@tool(roles=["analyst"])``)."""
    max_tokens: ClassVar[Literal["auto"] | None] = None
    """``"auto"``: each call's ``max_tokens`` (and so its hold) comes from this agent's observed reply
    lengths (p99 x 1.5, within the tier's maximum); a reply cut at that limit is asked again with the
    tier's maximum, budget permitting. ``None``: the tier's ``max_tokens``."""
    rate: ClassVar[Rate | None] = None
    """How fast this agent may call, over all its tasks and every process on the ledger
    (``Rate(calls_per_minute=60)``); a call over it waits its turn (``Runtime(rate_wait=...)``)."""
    human_cost_usd: ClassVar[str | None] = None
    """What one successful outcome costs when a person does it, in dollars (e.g. ``"8.50"``), for unit
    economics: each task records it, and ``paymaster report`` shows this agent's ROI against it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = f"agent class {cls.__qualname__}"
        name = cls.__dict__.get("name", getattr(cls, "name", None))
        if not isinstance(name, str) or not _NAME.match(name):
            raise AgentDefinitionError(
                f"{where} needs a class attribute `name`: a short identifier such as "
                f"name = \"refund\" (letters, digits, '_', '-', '.'; got {name!r})"
            )
        if not isinstance(cls.version, str) or not cls.version:
            raise AgentDefinitionError(
                f"{where}: version must be a non-empty string such as \"3\", got {cls.version!r}"
            )
        if not isinstance(cls.instructions, str):
            raise AgentDefinitionError(f"{where}: instructions must be a string (the system prompt)")
        if not isinstance(cls.budget, Budget):
            raise AgentDefinitionError(
                f"{where}: budget must be a paymaster.Budget, e.g. Budget(usd=\"0.50\", steps=10); "
                f"got {type(cls.budget).__name__}"
            )
        try:
            cls.complexity = Complexity(cls.complexity)
        except ValueError:
            raise AgentDefinitionError(
                f"{where}: complexity must be one of {[c.value for c in Complexity]}, got {cls.complexity!r}"
            ) from None
        routes: dict[Complexity, str] = {}
        for key, tier in dict(cls.routes).items():
            try:
                complexity = Complexity(key)
            except ValueError:
                raise AgentDefinitionError(
                    f"{where}: routes keys must be complexities {[c.value for c in Complexity]}, got {key!r}"
                ) from None
            if not isinstance(tier, str) or not tier:
                raise AgentDefinitionError(f"{where}: routes[{key!r}] must be a tier name, got {tier!r}")
            routes[complexity] = tier
        cls.routes = routes
        try:
            cls.on_cap = tuple(CapPolicy(p) for p in cls.on_cap)
        except (ValueError, TypeError):
            raise AgentDefinitionError(
                f"{where}: on_cap lists what to do at a cap, in order, from {[p.value for p in CapPolicy]}; "
                f"got {cls.on_cap!r}"
            ) from None
        try:
            cls.tools = tuple(Tool.from_function(t) for t in cls.tools)
        except ConfigurationError as exc:
            raise AgentDefinitionError(f"{where}: {exc}") from None
        if isinstance(cls.planner, str) and cls.planner not in PLANNERS:
            raise AgentDefinitionError(
                f"{where}: planner must be one of {sorted(PLANNERS)} or a Planner object, got {cls.planner!r}"
            )
        if cls.fixed_plan is not None and not isinstance(cls.fixed_plan, Plan):
            raise AgentDefinitionError(f"{where}: fixed_plan must be a paymaster.Plan")
        if not isinstance(cls.max_subtasks, int) or cls.max_subtasks < 1:
            raise AgentDefinitionError(f"{where}: max_subtasks must be a positive int, got {cls.max_subtasks!r}")
        if cls.summarise_over is not None and (not isinstance(cls.summarise_over, int) or cls.summarise_over < 100):
            raise AgentDefinitionError(
                f"{where}: summarise_over is a token count of at least 100 (or None), got {cls.summarise_over!r}"
            )
        if cls.role is not None and (not isinstance(cls.role, str) or not cls.role):
            raise AgentDefinitionError(f"{where}: role must be a non-empty string or None, got {cls.role!r}")
        if cls.rate is not None and not isinstance(cls.rate, Rate):
            raise AgentDefinitionError(
                f"{where}: rate must be a paymaster.Rate, e.g. Rate(calls_per_minute=60); got {cls.rate!r}"
            )
        if cls.max_tokens not in (None, "auto"):
            raise AgentDefinitionError(
                f"{where}: max_tokens is \"auto\" or None (a tier's max_tokens sets the number), got {cls.max_tokens!r}"
            )
        try:
            parse_human_cost(cls.human_cost_usd)
        except ValueError as exc:
            raise AgentDefinitionError(f"{where}: {exc}") from None
        names = [t.name for t in cls.tools if isinstance(t, Tool)]
        if len(set(names)) != len(names):
            raise AgentDefinitionError(f"{where}: tool names must be unique, got {names}")

    def make_plan(self, input: str) -> Plan | None:
        """A plan computed in Python for ``input``, or None to let the planner decide (the default)."""
        return self.fixed_plan

    def aggregate(self, input: str, outputs: Mapping[str, str]) -> str | None:
        """Combine subtask outputs in Python, or None for the default (a cheap-tier call when needed)."""
        return None

    def agrees(self, output: str, reference: str) -> bool | None:
        """Whether ``output`` says the same as ``reference`` (the shadow tier's answer); None lets a judge decide."""
        return None

    def evaluate(self, output: str) -> bool | None:
        """Whether ``output`` counts as a successful outcome (default: it is not empty)."""
        return bool(output.strip())


def planner_for(agent: type[Agent], default: Planner) -> Planner:
    """The planner an agent asked for: its own object, a named one, or the runtime's default."""
    choice = agent.planner
    if choice is None:
        return default
    if isinstance(choice, str):
        return PLANNERS[choice]()
    return choice
