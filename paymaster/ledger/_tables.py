"""The ledger's tables. Money is integer pico-dollars (see ``paymaster._money``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Connection, Index, UniqueConstraint, inspect, text
from sqlmodel import Field, SQLModel


def _counter() -> Any:
    """A non-null integer column that starts at zero, also for rows inserted by raw SQL."""
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


STEP_KINDS = ("plan", "execute", "tool", "retry", "summarise", "aggregate", "eval", "cache_hit")
STEP_STATUSES = ("ok", "error", "refused", "unsettled")
TASK_STATUSES_OPEN = ("running", "awaiting_approval")
# Literal, not bound: a query must repeat a partial index's condition word for word for the index to serve it.
# A change to the open statuses changes this condition: rename ix_tasks_open then (the upgrade matches by name).
OPEN_TASKS_SQL = f"status IN ({', '.join(repr(s) for s in TASK_STATUSES_OPEN)})"


# Covering indexes for the report's scans, so each reads a narrow index instead of every task row:
# percentiles walk (agent, cost) in order, the rollup groups by (tags, agent, tenant) without a sort,
# the daily totals read (created_at, cost). Each holds ``agent`` too, which every query filters on (shadow
# runs are left out). A task row is written when it opens and once more when it finishes, so they cost a
# few index entries per task, nothing per call. PostgreSQL cannot order a ``json`` column, so the rollup
# index is SQLite's only; there its scans read the table.
REPORT_INDEXES = (
    Index("ix_tasks_agent_cost", "agent", "cost_picos", "unpriced_calls", "status"),
    Index("ix_tasks_rollup", "tags", "agent", "tenant", "status", "success", "unpriced_calls", "cost_picos",
          "baseline_picos", "cache_hits", "saved_picos").ddl_if(dialect="sqlite"),
    Index("ix_tasks_daily", "created_at", "status", "unpriced_calls", "cost_picos", "agent"),
    # Each agent's latest recorded human cost: only the tasks that recorded one.
    Index("ix_tasks_human_cost", "agent", "created_at", "status", "human_cost_picos",
          sqlite_where=text("human_cost_picos IS NOT NULL"), postgresql_where=text("human_cost_picos IS NOT NULL")),
    # Recovery looks for the tasks still open; only those are indexed, so a finished task leaves the index
    # instead of adding an entry to a part of it that grows with every task ever run.
    Index("ix_tasks_open", "status", sqlite_where=text(OPEN_TASKS_SQL), postgresql_where=text(OPEN_TASKS_SQL)),
)
# Indexes an older Paymaster made that these replace: dropped by the upgrade, so no write pays for them.
# ix_tasks_agent is a prefix of ix_tasks_agent_cost and ix_tasks_created_at one of ix_tasks_daily; nothing
# looks tasks up by parent; ix_tasks_open indexes the open tasks that ix_tasks_status found among all of
# them. The reservations table holds only calls in flight, so scanning it is cheaper than keeping two more
# indexes written twice per call.
RETIRED_INDEXES = {
    "tasks": ("ix_tasks_day", "ix_tasks_agent", "ix_tasks_created_at", "ix_tasks_parent_id", "ix_tasks_status"),
    "reservations": ("ix_reservations_task_id", "ix_reservations_expires_at"),
}


class TaskRecord(SQLModel, table=True):
    """One task: who ran it, its budget, how it ended and what it cost."""

    __tablename__ = "tasks"
    __table_args__ = REPORT_INDEXES

    id: str = Field(primary_key=True)
    agent: str  # indexed first in ix_tasks_agent_cost
    agent_version: str
    tenant: str = Field(index=True)
    tags: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    budget: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    input_preview: str = ""
    status: str = Field(default="running")  # the open ones are indexed: ix_tasks_open
    stop_reason: str | None = None
    output: str | None = None
    success: bool | None = None
    cost_picos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    baseline_picos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    unpriced_calls: int = 0
    saved_picos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    parent_id: str | None = None
    depth: int = 0
    owner: str = ""  # host:pid of the process running it, to spot tasks orphaned by a crash
    policy_version: str | None = None  # the policy_version of the config it ran under
    human_cost_picos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """What a person costs per successful outcome, as the agent declared it when the task ran (for ROI)."""
    created_at: float  # newest first, ties in the order written; indexed first in ix_tasks_daily
    finished_at: float | None = None


class StepRecord(SQLModel, table=True):
    """One model or tool call (or a refusal to make one), failed ones too."""

    __tablename__ = "steps"

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True)
    subtask_id: str | None = None
    kind: str
    status: str = "ok"
    provider: str | None = None
    model: str | None = None
    tier: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_picos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    baseline_picos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    reserved_picos: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    saved_picos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    latency_ms: float = 0.0
    attempt: int = 1
    error: str | None = None
    note: str | None = None
    request_id: str | None = None  # the provider's id for the request, to match its own records
    created_at: float


class AccountRecord(SQLModel, table=True):
    """A budget account: caps, what is spent and what is held by open reservations."""

    __tablename__ = "accounts"

    id: str = Field(primary_key=True)
    cap_picos: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cap_tokens: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cap_calls: int | None = None
    cap_tool_calls: int | None = None
    spent_picos: int = _counter()
    spent_tokens: int = _counter()
    spent_calls: int = _counter()
    spent_tool_calls: int = _counter()
    reserved_picos: int = _counter()
    reserved_tokens: int = _counter()
    reserved_calls: int = _counter()
    reserved_tool_calls: int = _counter()
    killed: int = _counter()


class ReservationRecord(SQLModel, table=True):
    """Money, tokens and calls held against accounts while a call is in flight."""

    __tablename__ = "reservations"

    id: str = Field(primary_key=True)
    task_id: str
    accounts: str  # newline-separated account ids
    picos: int = Field(sa_column=Column(BigInteger, nullable=False))
    tokens: int = Field(sa_column=Column(BigInteger, nullable=False))
    calls: int
    tool_calls: int = 0
    kind: str
    subtask_id: str | None = None
    provider: str | None = None
    model: str | None = None
    tier: str | None = None
    host: str
    pid: int
    created_at: float
    expires_at: float
    owner: str | None = None  # the id of the worker (a Ledger) holding it; see WorkerRecord
    leases: str | None = None  # newline-separated ids of the leases it holds on shared accounts (LeaseRecord)


def _amount() -> Any:
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


def _size() -> Any:
    return Field(default=None, sa_column=Column(BigInteger, nullable=True))


class LeaseRecord(SQLModel, table=True):
    """A slice of a shared account that one worker reserves against in memory (see ``_leases``).

    ``size_*`` is held on the account (None: that dimension has no cap, nothing
    is held); ``held_*`` is what the worker's calls in flight hold on the slice,
    ``used_*`` what they spent. The account's ``spent`` takes ``used`` when the
    lease is returned; a lease whose worker died is closed at its worst case.
    """

    __tablename__ = "leases"

    id: str = Field(primary_key=True)
    account: str
    owner: str
    size_picos: int | None = _size()
    size_tokens: int | None = _size()
    size_calls: int | None = _size()
    size_tool_calls: int | None = _size()
    held_picos: int = _amount()
    held_tokens: int = _amount()
    held_calls: int = _amount()
    held_tool_calls: int = _amount()
    used_picos: int = _amount()
    used_tokens: int = _amount()
    used_calls: int = _amount()
    used_tool_calls: int = _amount()
    created_at: float


class WorkerRecord(SQLModel, table=True):
    """A live worker (one Ledger in one process, on any host): its heartbeat and when it expires.

    Its reservations and tasks name it as their owner. Once ``expires_at`` has
    passed, any other worker may close them at their worst case; the first to
    do so deletes this row, so a worker that was only paused finds it gone.
    """

    __tablename__ = "workers"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: float
    beat_at: float
    expires_at: float


class AlertRecord(SQLModel, table=True):
    """An alert that fired: an account passed a fraction of a cap. Unique, so it fires once."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("account", "dimension", "threshold"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    dimension: str
    threshold: float
    spent: int = Field(sa_column=Column(BigInteger, nullable=False))
    cap: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: float


class ServedModelRecord(SQLModel, table=True):
    """A model a provider served when asked for another, and the most output it returned.

    The guard reserves for the priciest model each requested model has been seen
    to be served by, and for the longest output it returned, from then on.
    """

    __tablename__ = "served_models"
    __table_args__ = (UniqueConstraint("provider", "requested", "served"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str
    requested: str
    served: str
    max_output_tokens: int = _counter()
    first_seen: float


class RateAdmissionRecord(SQLModel, table=True):
    """One call admitted under a rate: when, and what it counts against one rate key (``agent:refund``).

    Rows older than the longest window (an hour) are pruned as new calls are admitted.
    """

    __tablename__ = "rate_admissions"
    __table_args__ = (Index("ix_rate_admissions_key_at", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str
    at: float  # seconds since the epoch, on the admitting process's clock
    task_id: str
    calls: int = _counter()
    tool_calls: int = _counter()
    tokens: int = _counter()
    picos: int = _counter()


class CapRaiseRecord(SQLModel, table=True):
    """A temporary raise of an agent's task caps: by ``factor``, from ``starts_at`` until ``ends_at``, and why."""

    __tablename__ = "cap_raises"

    id: int | None = Field(default=None, primary_key=True)
    agent: str = Field(index=True)
    factor: str  # a Decimal, as text: exact on every database
    starts_at: float
    ends_at: float
    reason: str


def add_missing_indexes(conn: Connection) -> None:
    """Create the indexes this schema declares on tables an older Paymaster made (``create_all`` skips those),
    and drop the ones it retired.

    Run inside the schema transaction (SQLite's write lock, PostgreSQL's advisory lock), so many workers
    starting at once build each index once; on an existing ledger that takes about a second per million
    steps, once.
    """
    inspector = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in have:
                index.create(conn, checkfirst=True)  # honours ddl_if: SQLite-only indexes stay off PostgreSQL
        for name in RETIRED_INDEXES.get(table.name, ()):
            if name in have:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
