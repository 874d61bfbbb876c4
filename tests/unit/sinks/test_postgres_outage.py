"""Telling a PostgreSQL outage (retry the batch) from a refusal (a real error), without a server."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from kstream_lab.sinks.postgres import unavailable, where

REFUSED = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused'


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (psycopg.OperationalError(REFUSED), True),  # nothing listens: the server is down
        (psycopg.OperationalError("the connection is closed"), True),  # lost in an earlier outage
        (errors.AdminShutdown("terminating connection due to administrator command"), True),  # 57P01
        (errors.CannotConnectNow("the database system is shutting down"), True),  # 57P03
        (errors.TooManyConnections("sorry, too many clients already"), True),  # 53300
        (psycopg.OperationalError("connection failed: ... failed: FATAL:  the database system is starting up"), True),
        (psycopg.OperationalError('connection failed: ... failed: FATAL:  database "nope" does not exist'), False),
        (psycopg.OperationalError('connection failed: ... FATAL:  password authentication failed for user "x"'), False),
        (errors.UniqueViolation("duplicate key"), False),  # a bug in the rows or the SQL, not an outage
        (errors.UndefinedTable("relation does not exist"), False),
        (psycopg.ProgrammingError("syntax"), False),
    ],
)
def test_an_outage_is_told_from_a_refusal(exc: psycopg.Error, outage: bool) -> None:
    assert unavailable(exc) is outage


def test_where_names_the_server_never_the_password() -> None:
    assert where("postgresql://sink:s3cret@db.internal:6432/sales") == "db.internal:6432/sales"
    assert "s3cret" not in where("host=h port=1 dbname=d password=s3cret")
