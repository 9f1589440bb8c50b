"""The durable side of the cache: one SQLite file holding every entry and its vector.

Entry ids come from AUTOINCREMENT, so an id is never reused: a FAISS index in
some other process that still holds a deleted id can never be made to point
at a different prompt. Writes take the lock up front (BEGIN IMMEDIATE) so that
several processes can share one file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from paymaster._money import to_picos
from paymaster.cache._types import CacheScope

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, agent TEXT NOT NULL, agent_version TEXT NOT NULL, tier TEXT NOT NULL,
    UNIQUE (tenant, agent, agent_version, tier)
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope_id INTEGER NOT NULL REFERENCES scopes (id),
    prompt_key TEXT NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    cost_usd TEXT NOT NULL,      -- exact Decimal, as text
    created_at REAL NOT NULL,
    expires_at REAL,             -- NULL: never expires
    hits INTEGER NOT NULL DEFAULT 0,
    last_used REAL NOT NULL,     -- breaks eviction ties: least recently used goes first
    priority INTEGER NOT NULL,   -- GreedyDual eviction priority, in pico-dollars
    embedding BLOB NOT NULL      -- float32 unit vector
);
CREATE INDEX IF NOT EXISTS entries_scope_key ON entries (scope_id, prompt_key);
CREATE INDEX IF NOT EXISTS entries_priority ON entries (priority, last_used);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at) WHERE expires_at IS NOT NULL;
-- COUNT(*) reads every row; triggers keep the size at hand for every writer.
CREATE TABLE IF NOT EXISTS stats (id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL);
INSERT OR IGNORE INTO stats (id, entries) VALUES (1, (SELECT COUNT(*) FROM entries));
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
BEGIN UPDATE stats SET entries = entries + 1; END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
BEGIN UPDATE stats SET entries = entries - 1; END;
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"


@dataclass(frozen=True)
class Entry:
    """One stored answer, as read back from the file."""

    id: int
    scope_id: int
    key: str
    prompt: str
    output: str
    cost_usd: Decimal


class Store:
    """SQLite-backed entries, scopes and the eviction clock."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash may lose the
        # last commits, which for a cache means a few misses, never a wrong answer.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """Read one setting stored beside the entries."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Write one setting stored beside the entries."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _clock(self) -> int:
        value = self.get_meta("clock_picos")
        return 0 if value is None else int(value)

    # -- scopes -------------------------------------------------------------------------

    def find_scope(self, scope: CacheScope) -> int | None:
        """The id of a scope, or None if nothing was ever stored under it."""
        row = self._db.execute(
            "SELECT id FROM scopes WHERE tenant = ? AND agent = ? AND agent_version = ? AND tier = ?",
            (scope.tenant, scope.agent, scope.agent_version, scope.tier),
        ).fetchone()
        return None if row is None else int(row[0])

    def _scope_id(self, db: sqlite3.Connection, scope: CacheScope) -> int:
        values = (scope.tenant, scope.agent, scope.agent_version, scope.tier)
        db.execute(
            "INSERT OR IGNORE INTO scopes (tenant, agent, agent_version, tier) VALUES (?, ?, ?, ?)",
            values,
        )
        row = db.execute(
            "SELECT id FROM scopes WHERE tenant = ? AND agent = ? AND agent_version = ? AND tier = ?",
            values,
        ).fetchone()
        return int(row[0])

    # -- reads --------------------------------------------------------------------------

    def exact(self, scope_id: int, key: str, now: float) -> Entry | None:
        """The newest live entry of this scope stored under exactly this key."""
        row = self._db.execute(
            "SELECT id, scope_id, prompt_key, prompt, output, cost_usd FROM entries "
            f"WHERE scope_id = ? AND prompt_key = ? AND {_LIVE} ORDER BY id DESC LIMIT 1",
            (scope_id, key, now),
        ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, scope_id: int, ids: Iterable[int], now: float) -> dict[int, Entry]:
        """Live entries among `ids` that belong to this scope (others are simply absent)."""
        wanted = list(ids)
        if not wanted:
            return {}
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            "SELECT id, scope_id, prompt_key, prompt, output, cost_usd FROM entries "
            f"WHERE id IN ({marks}) AND scope_id = ? AND {_LIVE}",
            (*wanted, scope_id, now),
        ).fetchall()
        return {int(row[0]): _entry(row) for row in rows}

    def vectors_after(self, scope_id: int, after_id: int) -> list[tuple[int, bytes]]:
        """(id, embedding) of this scope's entries newer than `after_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, embedding FROM entries WHERE scope_id = ? AND id > ? ORDER BY id",
            (scope_id, after_id),
        ).fetchall()
        return [(int(row[0]), bytes(row[1])) for row in rows]

    def prompts(self) -> list[tuple[int, str]]:
        """(id, prompt) of every entry, for re-embedding after a change of model."""
        rows = self._db.execute("SELECT id, prompt FROM entries ORDER BY id").fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def count(self) -> int:
        """Number of stored entries, expired ones included."""
        return int(self._db.execute("SELECT entries FROM stats").fetchone()[0])

    # -- writes -------------------------------------------------------------------------

    def insert(
        self,
        scope: CacheScope,
        key: str,
        prompt: str,
        output: str,
        cost_usd: Decimal,
        embedding: bytes,
        now: float,
        expires_at: float | None,
    ) -> tuple[int, int, list[tuple[int, int]]]:
        """Store an entry, replacing any with the same key in its scope.

        Returns (scope id, new entry id, [(scope id, entry id)] of replaced entries).
        """
        with self._write() as db:
            scope_id = self._scope_id(db, scope)
            replaced = db.execute(
                "DELETE FROM entries WHERE scope_id = ? AND prompt_key = ? RETURNING id",
                (scope_id, key),
            ).fetchall()
            priority = self._clock() + to_picos(cost_usd)
            cursor = db.execute(
                "INSERT INTO entries (scope_id, prompt_key, prompt, output, cost_usd, created_at, "
                "expires_at, priority, last_used, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (scope_id, key, prompt, output, str(cost_usd), now, expires_at, priority, now, embedding),
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None
        return scope_id, entry_id, [(scope_id, int(row[0])) for row in replaced]

    def touch(self, entry_id: int, cost_usd: Decimal, now: float) -> None:
        """Record a hit: count it and lift the entry's eviction priority to the clock."""
        with self._write() as db:
            db.execute(
                "UPDATE entries SET hits = hits + 1, priority = ?, last_used = ? WHERE id = ?",
                (self._clock() + to_picos(cost_usd), now, entry_id),
            )

    def evict(self, max_entries: int, now: float) -> list[tuple[int, int]]:
        """Delete expired entries, then the lowest-priority ones past `max_entries`.

        GreedyDual: an entry's priority is the clock at its last use plus its cost,
        and the clock rises to each evicted priority. So cheap entries go first, and
        an expensive one that is never used again ages out as the clock passes it.
        """
        with self._write() as db:
            gone = db.execute(
                "DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING scope_id, id",
                (now,),
            ).fetchall()
            excess = int(db.execute("SELECT entries FROM stats").fetchone()[0]) - max_entries
            if excess > 0:
                evicted = db.execute(
                    "DELETE FROM entries WHERE id IN "
                    "(SELECT id FROM entries ORDER BY priority, last_used, id LIMIT ?) "
                    "RETURNING scope_id, id, priority",
                    (excess,),
                ).fetchall()
                clock = max(int(row[2]) for row in evicted)
                if clock > self._clock():
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock_picos', ?)", (str(clock),))
                gone += [(row[0], row[1]) for row in evicted]
        return [(int(row[0]), int(row[1])) for row in gone]

    def delete(
        self,
        *,
        tenant: str | None,
        agent: str | None,
        agent_version: str | None,
        tier: str | None,
        keep_version: str | None,
        key: str | None,
        entry_id: int | None,
    ) -> list[tuple[int, int]]:
        """Delete entries matching every given filter; returns their (scope id, entry id)."""
        scope_filters: list[str] = []
        entry_filters: list[str] = []
        params: list[object] = []
        for column, value in (
            ("tenant", tenant),
            ("agent", agent),
            ("agent_version", agent_version),
            ("tier", tier),
        ):
            if value is not None:
                scope_filters.append(f"{column} = ?")
                params.append(value)
        if keep_version is not None:
            scope_filters.append("agent_version != ?")
            params.append(keep_version)
        if scope_filters:
            entry_filters.append(f"scope_id IN (SELECT id FROM scopes WHERE {' AND '.join(scope_filters)})")
        if key is not None:
            entry_filters.append("prompt_key = ?")
            params.append(key)
        if entry_id is not None:
            entry_filters.append("id = ?")
            params.append(entry_id)
        where = " AND ".join(entry_filters) or "1"
        with self._write() as db:
            rows = db.execute(f"DELETE FROM entries WHERE {where} RETURNING scope_id, id", params).fetchall()
        return [(int(row[0]), int(row[1])) for row in rows]

    def set_embeddings(self, rows: list[tuple[int, bytes]]) -> None:
        """Replace stored vectors (after the embedding model changed)."""
        with self._write() as db:
            db.executemany("UPDATE entries SET embedding = ? WHERE id = ?", [(v, i) for i, v in rows])


def _entry(row: tuple[object, ...]) -> Entry:
    return Entry(
        id=int(str(row[0])),
        scope_id=int(str(row[1])),
        key=str(row[2]),
        prompt=str(row[3]),
        output=str(row[4]),
        cost_usd=Decimal(str(row[5])),
    )
