"""Which database errors the API answers with 503 (retry) rather than 500."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from webapp.errors import lost_connection


class _DriverError(Exception):
    def __init__(self, pgcode: str | None) -> None:
        super().__init__("driver error")
        self.pgcode = pgcode


@pytest.mark.parametrize(("pgcode", "invalidated", "lost"), [
    (None, False, True),       # the socket went away: psycopg2 has no SQLSTATE for it
    ("08006", False, True),    # connection_failure
    ("57P01", False, True),    # admin_shutdown: a restart
    ("57014", False, False),   # query_canceled: a statement timeout is not for a retry
    ("53100", False, False),   # disk_full
    ("40P01", False, False),   # deadlock_detected
    ("57014", True, True),     # whatever the code, SQLAlchemy saw the connection die
])
def test_only_a_lost_connection_is_worth_a_retry(pgcode, invalidated, lost):
    error = OperationalError("SELECT 1", {}, _DriverError(pgcode),
                             connection_invalidated=invalidated)
    assert lost_connection(error) is lost
