"""The ledger: every task, every call and every budget account, in SQL."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        WorkerRecord,
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
    "WorkerRecord",
    "new_task_id",
    "resolve_url",
]

# Imported on first use: the reading commands (ledger, report, statement, reconcile) read SQLite
# through the standard library and never need SQLModel, which is most of a command's start-up time.
_LAZY = {
    "HOST": "_accounts", "Accounts": "_accounts", "Alert": "_accounts", "Caps": "_accounts", "Charge": "_accounts",
    "Refusal": "_accounts", "Reservation": "_accounts", "DEFAULT_LEDGER_URL": "_ledger", "Ledger": "_ledger",
    "new_task_id": "_ledger", "resolve_url": "_ledger", "STEP_KINDS": "_tables", "AccountRecord": "_tables",
    "AlertRecord": "_tables", "ReservationRecord": "_tables", "ServedModelRecord": "_tables",
    "StepRecord": "_tables", "TaskRecord": "_tables", "WorkerRecord": "_tables", "Totals": "_tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'paymaster.ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
