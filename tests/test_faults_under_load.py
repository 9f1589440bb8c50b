"""bench/faults.py, small: a flaky, billing loopback provider and concurrent tasks on a cap of half the work."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from faults import scenario


def test_a_flaky_provider_under_load_never_pushes_spend_past_the_cap() -> None:
    result = scenario(60, seed=3)
    cap, ledger, billed = result["cap_picos"], result["ledger_picos"], result["billed_picos"]
    assert ledger <= cap  # no overshoot on the ledger ...
    assert billed <= ledger  # ... nor on the bill: every billed call is on the ledger, at its cost or more
    assert result["open"] == 0 and result["recorded"] == 60  # every task ended with a recorded status
    assert result["statuses"]["succeeded"] > 0 and result["statuses"]["budget_exceeded"] > 0  # the cap bound
