"""PostgreSQL sink behind the same interface as DuckDB.

PostgreSQL's MVCC already gives readers consistent snapshots while the sink writes, so the sink keeps
one connection and writes each batch in one transaction with ``INSERT ... ON CONFLICT DO UPDATE``
(never touching rows that are already final).

The database is a separate server that can stop, restart or drop the connection. That is an outage,
not a bad row: :func:`unavailable` tells it from a refusal, the sink raises
:class:`~kstream_lab.errors.DatabaseUnavailable` for it and opens a new connection on the next
write, and the sink worker holds the batch (no offset committed past it) until a write succeeds.
"""

from __future__ import annotations

import zlib

import psycopg
from psycopg.conninfo import conninfo_to_dict

from kstream_lab.errors import DatabaseUnavailable
from kstream_lab.sinks.base import AGGREGATE_COLUMNS, TABLE, create_table_sql, upsert_sql

DDL = create_table_sql(text="TEXT", updated_at="TIMESTAMPTZ NOT NULL DEFAULT now()")

# The sink's rule (a final row is never changed again) kept by the table itself, so a writer that
# upserts without that rule -- Kafka Connect's JDBC sink, whose ON CONFLICT DO UPDATE has no WHERE --
# cannot let an older update replayed after a crash overwrite a final. A BEFORE UPDATE trigger that
# returns NULL skips that row's update (ON CONFLICT DO UPDATE fires it too); it also keeps
# updated_at current for writers that do not set it. Our own upsert's WHERE already skips these rows.
FINAL_GUARD = f"""
CREATE OR REPLACE FUNCTION {TABLE}_keep_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.final THEN
        RETURN NULL;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER {TABLE}_keep_final BEFORE UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_keep_final()"""


# CREATE TABLE IF NOT EXISTS is not safe against itself: two sessions creating the table at the same
# moment can both pass the "exists?" check and one fails on pg_type's unique index. Sinks (and
# readers) starting together therefore take this transaction-scoped advisory lock around the DDL.
DDL_LOCK = zlib.crc32(f"kstream_lab.{TABLE}".encode())

UPSERT = upsert_sql(rows=f"VALUES ({', '.join(['%s'] * len(AGGREGATE_COLUMNS))})", now="now()")

# SQLSTATE classes that pass: connection exception, insufficient resources (too many connections),
# operator intervention (admin/crash shutdown, "cannot connect now" while it starts).
TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")
# A failed connect carries no SQLSTATE in psycopg, only libpq's message. A server that answered with
# FATAL refused us (password, role, database) -- unless it only said it is starting or stopping.
TRANSIENT_FATALS = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many clients",
)


def unavailable(exc: psycopg.Error) -> bool:
    """True when ``exc`` means the server is down, restarting or unreachable (retry later), False
    when it refused the request or the connection (a real error that a retry would repeat)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    if exc.sqlstate is not None:
        return exc.sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    message = str(exc)
    return "FATAL:" not in message or any(text in message for text in TRANSIENT_FATALS)


def where(dsn: str) -> str:
    """host:port/dbname of a DSN, for messages (a DSN may hold a password; this never does)."""
    info = conninfo_to_dict(dsn)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def read_aggregates(dsn: str, *, final_only: bool = False) -> list[dict]:
    """Every row of the table, ordered by key, over a connection of its own (readers, tests)."""
    cond = "WHERE final" if final_only else ""
    sql = f"SELECT {', '.join(AGGREGATE_COLUMNS)} FROM {TABLE} {cond} ORDER BY window_start, tier, source_partition"
    with psycopg.connect(dsn) as conn:
        return [dict(zip(AGGREGATE_COLUMNS, row, strict=True)) for row in conn.execute(sql).fetchall()]


def prepare_table(dsn: str) -> None:
    """Create the table with its final guard (idempotent): for writers other than :class:`PostgresSink`."""
    PostgresSink(dsn).close()


class PostgresSink:
    """Idempotent upserts into ``sales_aggregates`` of a PostgreSQL database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        """A connection with the table created; DatabaseUnavailable while the server cannot answer."""
        try:
            conn = psycopg.connect(self.dsn)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                conn.execute(DDL)
                conn.execute(FINAL_GUARD)
        except psycopg.Error as exc:
            raise self._outage_or(exc) from None
        return conn

    def _outage_or(self, exc: psycopg.Error) -> Exception:
        if not unavailable(exc):
            return exc
        detail = str(exc).strip().splitlines()[0]
        return DatabaseUnavailable(
            f"PostgreSQL at {where(self.dsn)} unavailable: {detail}",
            hint="the batch is held and written again once the database answers",
        )

    def upsert(self, rows: list[dict]) -> int:
        """Write ``rows`` in one transaction; DatabaseUnavailable when the server is down or the
        connection broke (the transaction did not commit, or did and the answer was lost: writing
        the same rows again is harmless either way). The next call connects anew."""
        if not rows:
            return 0
        if self.conn.closed:  # broken by an earlier outage
            self.conn = self._connect()
        params = [tuple(r[c] for c in AGGREGATE_COLUMNS) for r in rows]
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                cur.executemany(UPSERT, params)
        except psycopg.Error as exc:
            outage = self._outage_or(exc)
            if outage is not exc:
                self.conn.close()
            raise outage from None
        return len(params)

    def read(self, *, final_only: bool = False) -> list[dict]:
        return read_aggregates(self.dsn, final_only=final_only)

    def close(self) -> None:
        self.conn.close()
