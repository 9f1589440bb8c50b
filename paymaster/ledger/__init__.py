"""The ledger: every task, every call and every budget account, in SQL."""

from ._accounts import HOST, Accounts, Alert, Caps, Charge, Refusal, Reservation
from ._ledger import DEFAULT_LEDGER_URL, Ledger, new_task_id, resolve_url
from ._tables import (
    STEP_KINDS,
    AccountRecord,
    AlertRecord,
    ReservationRecord,
    ServedModelRecord,
    StepRecord,
    TaskRecord,
)
from ._tasks import Totals

__all__ = [
    "DEFAULT_LEDGER_URL",
    "HOST",
    "STEP_KINDS",
    "AccountRecord",
    "Accounts",
    "Alert",
    "AlertRecord",
    "Caps",
    "Charge",
    "Ledger",
    "Refusal",
    "Reservation",
    "ReservationRecord",
    "ServedModelRecord",
    "StepRecord",
    "TaskRecord",
    "Totals",
    "new_task_id",
    "resolve_url",
]
