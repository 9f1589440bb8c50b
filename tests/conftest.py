"""Shared fixtures. Network access is refused for every test by pytest-socket
(``--allow-hosts`` in pyproject.toml admits only loopback), so no test can
reach a real provider by accident; API keys are removed from the environment.

A test module marked ``pytestmark = pytest.mark.ledgers`` runs each test that
takes ``ledger_path`` twice: on a SQLite file, and on PostgreSQL, in a schema of
its own on the server named by PAYMASTER_TEST_POSTGRES (``.ci/run`` starts one;
locally: ``eval "$(.ci/postgres start /tmp/pg)"``). Without that variable the
PostgreSQL runs are skipped and say why."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from paymaster import Ledger, Runtime, ScriptedProvider


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "PAYMASTER_LEDGER"):
        monkeypatch.delenv(var, raising=False)


POSTGRES_ENV = "PAYMASTER_TEST_POSTGRES"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ledgers: run the module's ledger_path tests on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ledger_path" in metafunc.fixturenames and metafunc.definition.get_closest_marker("ledgers"):
        metafunc.parametrize("ledger_path", ["sqlite", "postgresql"], indirect=True)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A ledger URL on the test server whose tables live in a fresh schema, dropped afterwards."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test on (.ci/run starts one)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    server = base.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL ledger URL with a schema of its own (skipped without a test server)."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def ledger_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The test's ledger: a SQLite file, or (in modules marked ``ledgers``) a PostgreSQL URL too."""
    if getattr(request, "param", "sqlite") == "postgresql":
        with postgres_schema() as url:
            yield url
    else:
        yield tmp_path / "ledger.db"


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
