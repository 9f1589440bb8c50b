"""PostgreSQL as the ledger: a URL is enough, the schema is created once however many workers start at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from paymaster.errors import LedgerError
from paymaster.ledger import Caps, Charge, Ledger, Reservation, resolve_url


def test_a_plain_postgresql_url_uses_psycopg_3() -> None:
    assert resolve_url("postgresql://u@db/pm") == "postgresql+psycopg://u@db/pm"
    assert resolve_url("postgres://u@db/pm") == "postgresql+psycopg://u@db/pm"


def test_many_workers_creating_the_schema_at_once_all_get_one_schema(postgres_url: str) -> None:
    def start(_: int) -> None:
        db = Ledger(postgres_url)
        try:
            db.accounts.ensure({"tenant:acme": Caps(picos=100)})
            held = db.reserve(["tenant:acme"], Charge(picos=1), task_id="t", kind="execute")
            assert isinstance(held, Reservation)
            db.settle(held, Charge(picos=1), {"task_id": "t", "kind": "execute", "created_at": 0.0})
        finally:
            db.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))  # none fails on a table another worker was creating
    db = Ledger(postgres_url)
    account = db.account("tenant:acme")
    db.close()
    assert account is not None and account.spent_picos == 6 and account.reserved_picos == 0


def test_a_worker_that_may_not_create_the_schema_says_how_to_create_it(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match=r"create_schema\(\)"):
        Ledger(postgres_url, create_schema=False)
    Ledger(postgres_url).close()
    Ledger(postgres_url, create_schema=False).close()  # once created, it opens


def test_a_password_in_the_url_is_never_shown(postgres_url: str) -> None:
    with_password = postgres_url.replace("://postgres@", "://postgres:s3cret@", 1)
    assert "s3cret" in with_password
    db = Ledger(with_password)  # the test server trusts loopback, so any password opens it
    try:
        from paymaster.ledger._reader import Reader

        with Reader(with_password) as reader:
            assert "s3cret" not in reader.url
        assert "s3cret" not in db.url and "postgres:***@" in db.url
    finally:
        db.close()
    with pytest.raises(LedgerError) as refused:
        Ledger("postgresql://u:s3cret@127.0.0.1:1/db")  # nothing listens on port 1
    assert "s3cret" not in str(refused.value)
    with pytest.raises(LedgerError) as refused:  # psycopg also takes the password as a URL option
        Ledger("postgresql://u@127.0.0.1:1/db?password=s3cret&sslmode=disable")
    assert "s3cret" not in str(refused.value)
    as_option = Ledger(postgres_url + ("&" if "?" in postgres_url else "?") + "password=s3cret")
    try:
        assert "s3cret" not in as_option.url and "password=***" in as_option.url
        from paymaster.ledger._reader import Reader

        with pytest.raises(LedgerError) as failed, Reader(as_option) as reader:  # reads name the ledger too
            reader.rows("SELECT no_such_column FROM tasks")
        assert "s3cret" not in str(failed.value) and "password=***" in str(failed.value)
    finally:
        as_option.close()


def test_ten_thousand_capped_accounts_and_an_uncapped_one_are_created_together(postgres_url: str) -> None:
    db = Ledger(postgres_url)
    try:
        capped = {f"tenant:{i}": Caps(picos=i + 1) for i in range(10_001)}
        db.accounts.ensure({**capped, "tenant:open": None})  # two statements run as one: names must not clash
        last, open_ = db.account("tenant:10000"), db.account("tenant:open")
    finally:
        db.close()
    assert last is not None and last.cap_picos == 10_001
    assert open_ is not None and open_.cap_picos is None
