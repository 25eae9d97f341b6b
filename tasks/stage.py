"""What every stage core returns: records that go on, records refused, and a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.storage.quarantine import Rejected


class StageFailure(Exception):
    """A permanent failure of a job (not retried): code and message go to the job's error."""

    def __init__(self, code: str, message: str, details: Any = None,
                 result: dict[str, Any] | None = None,
                 rejected: list[Rejected] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.result = result
        self.rejected = rejected or []


@dataclass
class StageOutput:
    records: list[dict[str, Any]]
    result: dict[str, Any]
    rejected: list[Rejected] = field(default_factory=list)
    records_in: int = 0
    # Records written by a stage with no output batch (store); else what went on.
    records_out: int | None = None
    # The stage ran to its end, but the job fails (validation under reject_batch): what
    # it quarantined stays, what it passed on is dropped.
    failure: StageFailure | None = None


def utc_timestamp() -> str:
    """Now, as the ISO 8601 UTC string the seed's results use."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
