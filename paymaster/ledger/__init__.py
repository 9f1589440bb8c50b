"""The ledger: every task, every call and every budget account, in SQL."""

from ._ledger import (
    DEFAULT_LEDGER_URL,
    Caps,
    Charge,
    Ledger,
    Refusal,
    Reservation,
    new_task_id,
    resolve_url,
)
from ._tables import STEP_KINDS, AccountRecord, ReservationRecord, StepRecord, TaskRecord

__all__ = [
    "DEFAULT_LEDGER_URL",
    "STEP_KINDS",
    "AccountRecord",
    "Caps",
    "Charge",
    "Ledger",
    "Refusal",
    "Reservation",
    "ReservationRecord",
    "StepRecord",
    "TaskRecord",
    "new_task_id",
    "resolve_url",
]
