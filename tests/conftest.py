"""Shared fixtures. Network access is refused for every test by pytest-socket
(``--allow-hosts`` in pyproject.toml admits only loopback), so no test can
reach a real provider by accident; API keys are removed from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paymaster import Ledger, Runtime, ScriptedProvider


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "PAYMASTER_LEDGER"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def scripted() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def runtime(ledger_path: Path, scripted: ScriptedProvider) -> Iterator[Runtime]:
    with Runtime(ledger=ledger_path, provider=scripted) as rt:
        yield rt


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    db = Ledger(ledger_path)
    yield db
    db.close()
