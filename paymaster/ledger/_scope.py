"""Which tasks a ledger query covers: a ``Scope`` and the SQL conditions it stands for.

Only finished tasks count (a running task's cost is not final), and shadow
evaluation runs are left out unless asked for. A task with a call of unknown
price (``unpriced_calls > 0``) is counted and flagged, but kept out of the
money figures: ``_PRICED`` is the condition that keeps it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._money import PICOS_PER_USD
from ._reader import OPEN_STATUSES, Reader, in_params

if TYPE_CHECKING:
    from ._ledger import Ledger

    Source = Ledger | Reader

_PICO = Decimal(1) / PICOS_PER_USD
_PRICED = "tasks.unpriced_calls = 0"  # tasks whose every call had a price


@dataclass(frozen=True)
class Scope:
    """Which tasks a query covers: created in [since, until) (epoch seconds), of a tenant, agent and tags."""

    since: float | None = None
    until: float | None = None
    tenant: str | None = None
    agent: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def where(
    reader: Reader, scope: Scope, *, finished: bool = True, shadows: bool = False
) -> tuple[str, dict[str, Any]]:
    """The SQL conditions of a scope over ``tasks`` (finished tasks only, unless told), and their parameters.

    Shadow evaluation runs (agent ``NAME#shadow``) are left out unless ``shadows``: they are not live work.
    """
    conds: list[str] = []
    params: dict[str, Any] = {}
    if not shadows and scope.agent is None:
        conds.append("tasks.agent NOT LIKE :notshadow")
        params["notshadow"] = "%#shadow"
    if finished:
        names, values = in_params("open", OPEN_STATUSES)
        conds.append(f"tasks.status NOT IN {names}")
        params.update(values)
    for name, op, value in (("since", ">=", scope.since), ("until", "<", scope.until)):
        if value is not None:
            conds.append(f"tasks.created_at {op} :{name}")
            params[name] = value
    for name in ("tenant", "agent"):
        equals = getattr(scope, name)
        if equals is not None:
            conds.append(f"tasks.{name} = :{name}")
            params[name] = equals
    for i, (key, tag) in enumerate(sorted(scope.tags.items())):
        conds.append(f"{reader.tag_value(f'tagk{i}')} = :tagv{i}")
        params[f"tagk{i}"], params[f"tagv{i}"] = key, tag
    return " AND ".join(conds) or "1 = 1", params
