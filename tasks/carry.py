"""Small batches ride with their stage messages: a claim check with a threshold.

Stages hand their output on by reference: written to PostgreSQL with the stage's
outcome on the job row, read back by the next stage. For a batch of a few records that
costs far more than the work (a claim, a write, a job-row update and a commit: 2-3 ms a
stage here, against well under 1 ms of work). So an input of at most CARRY_BYTES of JSON
travels in the next stage's message instead, together with what the stages before it
did: their outcomes and the records they quarantined.

Nothing is written until a stage lands the carry: the last stage of the chain, a stage
whose message came back after its worker died, a stage whose output is too big to
carry on, and a stage that fails. Landing writes the carried state in that stage's
transaction (the earlier stages' outcomes on the job row, their quarantined records,
the input as the payload the stage reads), and the stage then runs by reference as
always: claims, restarts and failures are recorded as for any other stage.

Nothing accepted is lost: the raw batch was stored with the job before any message was
sent. If a carried message is lost (a Redis restart), the job stays queued and the
recovery sweep sends its stages again by reference. A job that such a delivery has
touched (a stage claimed) is that delivery's to finish: a carry then steps aside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from tasks import jsontext
from tasks.chunks import InputHead, StageInput, StageSink
from tasks.storage import jobs, payloads, quarantine
from tasks.storage.quarantine import Rejected

# An input of at most this much JSON text (and the records quarantined so far) travels
# in the message. Far below what makes the broker the bottleneck (ARCHITECTURE.md:
# batches of thousands of records), and about a hundred campaign rows.
CARRY_BYTES = 32 * 1024

# The job's fields a stage's step reads; the rest is the job row's business.
_JOB_FIELDS = ("id", "kind", "data_type", "source", "options", "records_count")


class BadCarry(ValueError):
    """A message's carry is not one this code wrote."""


@dataclass
class Carry:
    """A carried stage's input, and what the stages before it did."""

    job: dict[str, Any]  # _JOB_FIELDS, and "stages": the chain's stage names
    input_name: str  # the payload the stage would read by reference
    body: str  # its JSON text, as it would be stored
    records: int
    done: list[dict[str, Any]] = field(default_factory=list)  # earlier stages' outcomes
    rejected: list[dict[str, Any]] = field(default_factory=list)  # stage, index, record, reasons

    @classmethod
    def first(cls, job: dict[str, Any], body: bytes | None) -> Carry | None:
        """The carry of a job's first stage: its raw batch of one chunk, `body` (None: more
        chunks), when small enough and when the job has more than one stage (a lone stage
        lands at once, so a carry would save nothing)."""
        if body is None or len(job["stages"]) < 2 or len(body) > CARRY_BYTES:
            return None
        essentials = {name: job[name] for name in _JOB_FIELDS}
        essentials["id"] = str(essentials["id"])
        essentials["stages"] = [s["name"] for s in job["stages"]]
        return cls(essentials, payloads.RAW, body.decode(), int(job["records_count"]))

    def to_message(self) -> dict[str, Any]:
        return {"job": self.job, "input": {"name": self.input_name, "body": self.body,
                                           "records": self.records},
                "done": self.done, "rejected": self.rejected}

    @classmethod
    def from_message(cls, job_id: str, message: Any) -> Carry:
        try:
            job, given = message["job"], message["input"]
            carry = cls(dict(job), str(given["name"]), given["body"], int(given["records"]),
                        list(message["done"]), list(message["rejected"]))
            names = [str(name) for name in job["stages"]]
            well_formed = isinstance(carry.body, str) and all(
                o["name"] in names and isinstance(o["started_at"], str)
                and isinstance(o["finished_at"], str) for o in carry.done) and all(
                r["stage"] in names and isinstance(r["index"], int)
                and isinstance(r["reasons"], list) and "record" in r for r in carry.rejected)
        except (KeyError, TypeError, ValueError) as exc:  # the value itself is not logged
            raise BadCarry(f"malformed carry ({type(exc).__name__})") from None
        if not well_formed:
            raise BadCarry("malformed carry")
        if carry.job.get("id") != job_id or not names:
            raise BadCarry("the carry is not this job's")
        return carry

    def job_row(self) -> dict[str, Any]:
        """The job as a stage's step sees it."""
        return {**self.job, "status": jobs.QUEUED,
                "stages": [jobs.new_stage(name) for name in self.job["stages"]]}

    def head(self) -> InputHead:
        """The input as `lock_job_with_input` would have read it: one small chunk."""
        return InputHead(self.input_name, 0, self.body, self.records, 1)

    def is_last(self, stage_name: str) -> bool:
        return self.job["stages"][-1] == stage_name

    def passed_on(self, outcome: dict[str, Any], body: bytes, records: int,
                  rejected: list[dict[str, Any]]) -> Carry | None:
        """The next stage's carry after this one's `outcome` (jobs.finish_stage's fields),
        or None when it would be too big to carry: its records and those quarantined so far
        past CARRY_BYTES, or the stages' outcomes (validation's report grows with its
        rules)."""
        done = [*self.done, _plain(outcome)]
        refused = [*self.rejected, *rejected]
        if len(body) + len(jsontext.dumps(refused)) > CARRY_BYTES or \
                len(jsontext.dumps(done)) > CARRY_BYTES:
            return None
        return Carry(self.job, outcome["name"], body.decode(), records, done, refused)


def _plain(value: Any) -> Any:
    """`value` in JSON's own types, as the broker's JSON carries it."""
    return jsontext.plain(value)


def carried_rejects(stage: str, rejected: Sequence[tuple[Rejected, int]]) -> list[dict[str, Any]]:
    """Quarantined records, each (Rejected, offset of its chunk), as a carry holds them."""
    return [{"stage": stage, "index": r.index + offset, "record": quarantine.jsonable(r.record),
             "reasons": quarantine.jsonable(r.reasons)} for r, offset in rejected]


def land(conn: Connection, job: dict[str, Any], carry: Carry) -> bool:
    """Record what the carried stages did, in the caller's transaction: their outcomes on
    `job` (the job row, locked: the caller writes it with the stage's claim, outcome or
    failure) and the records they quarantined. True, writing nothing, when there is
    nothing to record or it has been recorded already. False, changing nothing, when the
    job has finished or another delivery of its stages has claimed one.

    The stage reads its input from the carry (`head`); `keep_input` stores it too, for a
    stage that commits its claim before its work."""
    if job["status"] in jobs.FINISHED:
        return False
    stages = {s["name"]: s for s in job["stages"]}
    if all(stages[o["name"]]["status"] == jobs.SUCCEEDED
           and stages[o["name"]].get("finished_at") == o["finished_at"] for o in carry.done):
        # Nothing carried to record, or an earlier delivery of this message recorded it
        # with its claim (a restarted stage) and died: the claim decides, as by reference.
        return True
    if job["status"] != jobs.QUEUED or any(s["status"] != jobs.PENDING for s in job["stages"]):
        return False
    for outcome in carry.done:
        stages[outcome["name"]].update(outcome, status=jobs.SUCCEEDED)
    if carry.done:  # written with the stage's own outcome (or a failure's, given `job`)
        job["started_at"] = datetime.fromisoformat(carry.done[0]["started_at"])
    for stage in dict.fromkeys(r["stage"] for r in carry.rejected):
        quarantine.save(conn, job["id"], stage, [
            Rejected(r["index"], r["record"], r["reasons"])
            for r in carry.rejected if r["stage"] == stage])
    return True


def keep_input(conn: Connection, job_id: str, carry: Carry) -> None:
    """Store the carried input as the payload the stage reads, replacing what an earlier
    delivery stored: a stage that commits its claim and dies is sent again by the recovery
    sweep, by reference."""
    if carry.input_name != payloads.RAW:  # the raw batch is stored already
        payloads.discard(conn, job_id, [carry.input_name])
        payloads.save_encoded(conn, job_id, carry.input_name, 0, carry.records,
                              carry.body.encode())


class CarriedSink(StageSink):
    """A carried stage's sink: what goes on and what is refused are kept for the next
    stage's message (or for landing), not written."""

    def __init__(self, conn: Connection, job_id: str, name: str) -> None:
        super().__init__(conn, job_id, name)
        self.records: list[Any] = []
        self.quarantined: list[tuple[Rejected, int]] = []

    def write(self, records: Sequence[Any]) -> None:
        self.written += len(records)
        self.records.extend(records)

    def pass_on(self, source: StageInput, records: Sequence[Any], dropped: Sequence[int],
                fill: Mapping[str, Any] | None = None) -> None:
        self.write(records)  # the next stage's message carries them

    def reject(self, rejected: Sequence[Rejected], offset: int = 0) -> None:
        self.rejected += len(rejected)
        self.quarantined.extend((r, offset) for r in rejected)

    def close(self) -> None:
        pass


def describe(message: dict[str, Any]) -> str:
    """What task events and logs show of a message's carry: never the records."""
    given = message.get("input") or {}
    return repr({"carry": f"<{given.get('records')} records of {given.get('name')}>"})
