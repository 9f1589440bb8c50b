"""Policies as code: the ``[agents.NAME]`` and ``[tools.NAME]`` tables of the TOML config, and its version.

```toml
policy_version = "2026-11-30.1"      # recorded on every task run under this file

[agents.refund]
budget = {usd = "2.50", steps = 12}   # replaces the caps the class sets
rate = {calls_per_minute = 60}
role = "support"
human_cost_usd = "8.50"
routes = {complex = "deep"}

[tools.market_data]                   # overrides what the @tool decorator set
roles = ["analyst"]
min_budget_usd = "1"
approve_after_calls = 50
rate = {calls_per_minute = 10}
```

The file is checked when it is read: an unknown setting, a negative rate or
budget, an unknown tier or complexity is an error naming the table and what
to write instead. Given the agent classes (``Runtime(agents=[...])``), a table
naming no agent, or no tool of those agents, is an error too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import ConfigurationError
from ..executors import Rate, Tool, ToolPolicy
from ..ledger._economics import parse_human_cost
from ..planners import Complexity
from ..router import TierTable
from ._agent import Agent
from ._budget import Budget

_AGENT_SETTINGS = ("budget", "rate", "role", "human_cost_usd", "routes")
_TOOL_SETTINGS = ("roles", "min_budget_usd", "approve_after_calls", "approve_over_usd", "rate")


@dataclass(frozen=True)
class AgentPolicy:
    """What the config sets for one agent; None leaves the class's own setting."""

    budget: Budget | None = None
    rate: Rate | None = None
    role: str | None = None
    human_cost_usd: Decimal | None = None
    routes: Mapping[Complexity, str] | None = None


@dataclass(frozen=True)
class Policies:
    """The config's version, agent policies and tool policy overrides."""

    version: str | None = None
    agents: Mapping[str, AgentPolicy] = field(default_factory=dict)
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _applied: dict[type[Agent], type[Agent]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, data: Mapping[str, Any], where: str, tiers: TierTable) -> Policies:
        """Read and check ``policy_version``, ``[agents.*]`` and ``[tools.*]``."""
        version = data.get("policy_version")
        if version is not None and (not isinstance(version, str | int) or isinstance(version, bool) or
                                    not str(version).strip()):
            raise ConfigurationError(f"{where}: policy_version must be a string such as \"2026-11-30.1\", got "
                                     f"{version!r}")
        agents = {name: _agent_policy(spec, f"{where}: agents.{name}", tiers)
                  for name, spec in _tables(data, "agents", where).items()}
        tools = {name: _tool_policy(spec, f"{where}: tools.{name}")
                 for name, spec in _tables(data, "tools", where).items()}
        return cls(None if version is None else str(version), agents, tools)

    def check_agents(self, agents: Iterable[type[Agent]], where: str) -> None:
        """Every ``[agents.NAME]`` must name one of ``agents``, every ``[tools.NAME]`` one of their tools."""
        classes = list(agents)
        if any(not (isinstance(a, type) and issubclass(a, Agent)) for a in classes):
            raise ConfigurationError("Runtime(agents=...) takes Agent subclasses (the classes themselves)")
        names = sorted({a.name for a in classes})
        for name in self.agents:
            if name not in names:
                raise ConfigurationError(
                    f"{where}: [agents.{name}] names no agent; the agents are {names} (fix the name, or "
                    "pass the agent's class in Runtime(agents=[...]))"
                )
        tools = sorted({t.name for a in classes for t in a.tools if isinstance(t, Tool)})
        for name in self.tools:
            if name not in tools:
                raise ConfigurationError(
                    f"{where}: [tools.{name}] names no tool of these agents; the tools are {tools}"
                )

    def apply(self, agent: type[Agent]) -> type[Agent]:
        """``agent`` with the config's settings over its own: a subclass, made once per class and checked as one."""
        if not (isinstance(agent, type) and issubclass(agent, Agent)) or agent is Agent:
            return agent  # run() explains what it takes
        made = self._applied.get(agent)
        if made is not None:
            return made
        found = self.agents.get(agent.name)
        tools = [self.tool(t) if isinstance(t, Tool) else t for t in agent.tools]
        made = agent
        if found is not None or any(a is not b for a, b in zip(tools, agent.tools, strict=True)):
            settings: dict[str, Any] = {"tools": tuple(tools), "__module__": agent.__module__}
            if found is not None:
                settings.update({f.name: getattr(found, f.name) for f in dataclasses.fields(found)
                                 if getattr(found, f.name) is not None})
                if found.routes is not None:
                    settings["routes"] = {**agent.routes, **found.routes}
                if found.human_cost_usd is not None:
                    settings["human_cost_usd"] = str(found.human_cost_usd)
            made = type(agent.__name__, (agent,), settings)
        self._applied[agent] = made
        return made

    def tool(self, tool: Tool) -> Tool:
        """``tool`` with the config's settings for it over its own policy."""
        given = self.tools.get(tool.name)
        if not given:
            return tool
        return dataclasses.replace(tool, policy=dataclasses.replace(tool.policy, **given))


def _tables(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Mapping[str, Any]]:
    table = data.get(name, {})
    if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
        raise ConfigurationError(f"{where}: {name} holds one table per {name[:-1]}: [{name}.NAME]")
    return table


def _unknown(spec: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ConfigurationError(f"{where}: unknown setting(s) {unknown}; the settings are {list(allowed)}")


def _agent_policy(spec: Mapping[str, Any], where: str, tiers: TierTable) -> AgentPolicy:
    _unknown(spec, _AGENT_SETTINGS, where)
    try:
        budget = None if "budget" not in spec else Budget(**_table(spec["budget"], "budget", where))
        rate = None if "rate" not in spec else Rate(**_table(spec["rate"], "rate", where))
        human = parse_human_cost(spec.get("human_cost_usd"))
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    role = spec.get("role")
    if role is not None and (not isinstance(role, str) or not role):
        raise ConfigurationError(f"{where}: role must be a non-empty string, got {role!r}")
    routes: dict[Complexity, str] | None = None
    if "routes" in spec:
        routes = {}
        for key, tier in _table(spec["routes"], "routes", where).items():
            try:
                complexity = Complexity(key)
            except ValueError:
                raise ConfigurationError(
                    f"{where}: routes keys are complexities {[c.value for c in Complexity]}, got {key!r}"
                ) from None
            known = [t.name for t in tiers]
            if not isinstance(tier, str) or tier not in known:
                raise ConfigurationError(f"{where}: routes.{key} names unknown tier {tier!r}; the tiers are {known}")
            routes[complexity] = tier
    return AgentPolicy(budget, rate, role, human, routes)


def _tool_policy(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    _unknown(spec, _TOOL_SETTINGS, where)
    given: dict[str, Any] = {}
    try:
        if "roles" in spec:
            roles = spec["roles"]
            if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
                raise ValueError(f"roles must be a list of role names such as [\"analyst\"], got {roles!r}")
            given["roles"] = frozenset(roles)
        for name in ("min_budget_usd", "approve_over_usd"):
            if name in spec:
                given[name] = parse_human_cost(spec[name], name)
        if "approve_after_calls" in spec:
            given["approve_after_calls"] = spec["approve_after_calls"]
        if "rate" in spec:
            given["rate"] = Rate(**_table(spec["rate"], "rate", where))
        ToolPolicy(**given)  # the policy's own checks (a count >= 0, ...)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: {exc}".replace("tool policy: ", "")) from None
    return given


def _table(value: Any, name: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: {name} must be a table such as {name} = {{...}}, got {value!r}")
    return value
