"""The job store: one durable row per job with its stages, counts, results and error.

The job row is the truth clients poll; it survives a Redis flush and a worker crash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, Text, bindparam, func, insert, literal, select, update
from sqlalchemy.engine import Connection

from tasks.storage.schema import jobs_table, payloads_table

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
PENDING = "pending"
FINISHED = (SUCCEEDED, FAILED)
# NOTIFY channel: the job id is sent when a job finishes (see webapp/job_events.py), by
# a trigger on the status column (migration 0006), in the statement that finishes it.
JOB_DONE_CHANNEL = "pipeline_job_done"

# The statements of every stage, built once: building one cost 20-70 µs of a stage's few
# milliseconds.
_BY_ID = select(jobs_table).where(jobs_table.c.id == bindparam("job_id"))
# FOR NO KEY UPDATE: it serialises writers of the job row as FOR UPDATE would, but does
# not wait for a running stage, whose inserts of payload and quarantine rows (foreign
# keys to this row) hold a KEY SHARE lock on it until the stage commits.
_BY_ID_FOR_UPDATE = _BY_ID.with_for_update(key_share=True)
# Sets the columns named by the parameters besides job_id.
_UPDATE_BY_ID = update(jobs_table).where(jobs_table.c.id == bindparam("job_id"))


def _set(conn: Connection, job_id: str, values: dict[str, Any]) -> None:
    conn.execute(_UPDATE_BY_ID, {"job_id": job_id, **values})


def progress_snapshot(stage: str, done: int, total: int | None) -> dict[str, Any]:
    """The job's `progress`: how far its running stage is."""
    return {"stage": stage, "records_done": done, "records_total": total}


def input_count(job: dict[str, Any], stage_name: str) -> int:
    """Records a stage takes in: what the stage before it passed on, or for the first
    stage the count made when the batch was accepted."""
    names = [s["name"] for s in job["stages"]]
    position = names.index(stage_name)
    if position == 0:
        return int(job["records_count"])
    return int(job["stages"][position - 1]["records_out"] or 0)


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_stage(name: str) -> dict[str, Any]:
    return {
        "name": name, "status": PENDING, "records_in": None, "records_out": None,
        "started_at": None, "finished_at": None, "result": None,
    }


_CREATED_COLUMNS = ("id", "kind", "status", "data_type", "source", "options", "stages",
                    "records_count", "idempotency_key", "request_hash", "enqueue_count")
_CREATE = insert(jobs_table).values(
    {name: bindparam(name, type_=jobs_table.c[name].type) for name in _CREATED_COLUMNS}
).returning(*jobs_table.c)
# The job and its raw batch's one chunk in one statement (see `create`).
_NEW_JOB = _CREATE.cte("job")
_CREATE_WITH_CHUNK = select(_NEW_JOB).add_cte(insert(payloads_table).from_select(
    ["job_id", "name", "seq", "record_count", "body"],
    select(_NEW_JOB.c.id, bindparam("chunk_name", type_=Text), literal(0, Integer),
           bindparam("chunk_records", type_=Integer), bindparam("chunk_body", type_=Text)),
).cte("chunk"))


def create(
    conn: Connection,
    *,
    job_id: str,
    kind: str,
    data_type: str,
    source: str | None,
    stages: list[str],
    options: dict[str, Any],
    records_count: int,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    enqueue_count: int = 0,
    raw_chunk: tuple[str, int, bytes] | None = None,
) -> dict[str, Any]:
    """Insert a queued job; returns its row. `raw_chunk`: (payload name, record count,
    JSON text) of a batch of one chunk, stored in the same statement: one round trip
    where the job and a COPY took three (the text travels in the SQL, which PostgreSQL's
    lexer reads byte by byte: for small batches only)."""
    values = {
        "id": job_id, "kind": kind, "status": QUEUED, "data_type": data_type,
        "source": source, "options": options, "stages": [new_stage(s) for s in stages],
        "records_count": records_count, "idempotency_key": idempotency_key,
        "request_hash": request_hash, "enqueue_count": enqueue_count,
    }
    if raw_chunk is None:
        return dict(conn.execute(_CREATE, values).mappings().one())
    name, count, body = raw_chunk
    return dict(conn.execute(_CREATE_WITH_CHUNK, {
        **values, "chunk_name": name, "chunk_records": count, "chunk_body": body.decode(),
    }).mappings().one())


def get(conn: Connection, job_id: str, for_update: bool = False) -> dict[str, Any] | None:
    row = conn.execute(_BY_ID_FOR_UPDATE if for_update else _BY_ID,
                       {"job_id": job_id}).mappings().first()
    return dict(row) if row else None


def find_by_idempotency_key(conn: Connection, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(jobs_table).where(jobs_table.c.idempotency_key == key)
    ).mappings().first()
    return dict(row) if row else None


def _stage(job: dict[str, Any], name: str) -> dict[str, Any]:
    for stage in job["stages"]:
        if stage["name"] == name:
            return stage
    raise KeyError(f"job {job['id']} has no stage {name!r}")


def input_name(job: dict[str, Any], stage_name: str) -> str:
    """The payload a stage reads: the output of the stage before it, or the raw batch."""
    names = [s["name"] for s in job["stages"]]
    index = names.index(stage_name)
    return "raw" if index == 0 else names[index - 1]


def _seconds_since(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return float("inf")
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def claim_stage(
    conn: Connection, job_id: str, stage_name: str, claimant: str, stale_seconds: float,
    *, write: bool = True, redelivered: bool = False, locked: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Lock the job and take the stage for `claimant` (a task id); None when it must not run.
    With `write` False the claim is only made on the returned job (the caller writes it
    with `write_claim`, or with `finish_stage` in the same transaction).

    Not run: a stage already succeeded, a job already finished, or a stage that another
    task holds with a fresh heartbeat. The same task (a retry, or its message redelivered
    after a worker died) takes the stage over at once; another task only once the
    holder's heartbeat is older than `stale_seconds`. Each claim bumps `attempt`, so a
    superseded holder cannot commit its output (see `owns_stage`). A `redelivered`
    message (its worker died) and a takeover from another task also bump `restarts`.

    `locked`: the job row, already read and locked by this transaction as `get` with
    `for_update` does (tasks/chunks.py reads it with the stage's first input chunk).
    """
    job = locked if locked is not None else get(conn, job_id, for_update=True)
    if job is None or job["status"] in FINISHED:
        return None
    stage = _stage(job, stage_name)
    if stage["status"] == SUCCEEDED:
        return None
    position = [s["name"] for s in job["stages"]].index(stage_name)
    if any(s["status"] != SUCCEEDED for s in job["stages"][:position]):
        # Its input is not there (a message sent ahead, or an earlier stage's commit lost
        # in a database crash): the recovery sweep resumes at the first unfinished stage.
        return None
    now = utcnow()
    held_by_another = stage["status"] == RUNNING and stage.get("claimed_by") != claimant
    if held_by_another and _seconds_since(stage.get("heartbeat_at"), now) < stale_seconds:
        return None
    stage.update(
        status=RUNNING, claimed_by=claimant, attempt=stage.get("attempt", 0) + 1,
        heartbeat_at=isoformat(now),
    )
    if redelivered or held_by_another:  # its worker died, or stopped beating (see run_stage)
        stage["restarts"] = stage.get("restarts", 0) + 1
    stage["started_at"] = stage.get("started_at") or isoformat(now)
    values: dict[str, Any] = {
        "stages": job["stages"], "status": RUNNING, "updated_at": now,
        "progress": progress_snapshot(stage_name, 0, input_count(job, stage_name)),
    }
    if job["started_at"] is None:
        values["started_at"] = now
    job.update(values)
    if write:
        write_claim(conn, job)
    return job


def write_claim(conn: Connection, job: dict[str, Any]) -> None:
    """Record the claim `claim_stage` made on `job`."""
    _set(conn, job["id"], {
        "stages": job["stages"], "status": job["status"], "updated_at": job["updated_at"],
        "progress": job["progress"], "started_at": job["started_at"]})


def owns_stage(job: dict[str, Any] | None, stage_name: str, attempt: int) -> bool:
    """True while the stage is still running under this claim (no one took it over)."""
    if job is None or job["status"] in FINISHED:
        return False
    stage = _stage(job, stage_name)
    return stage["status"] == RUNNING and stage.get("attempt") == attempt


def may_record_failure(job: dict[str, Any] | None, stage_name: str, attempt: int,
                       *, claimed: bool) -> bool:
    """Whether an attempt whose work failed may still record the failure (and quarantine
    what it refused): not once the job has finished or the stage has succeeded, nor once
    another task has claimed the stage after it. `claimed`: this attempt's claim was
    committed before the work (else it was rolled back with it, and the stage shows the
    attempt before this one)."""
    if claimed:
        return owns_stage(job, stage_name, attempt)
    if job is None or job["status"] in FINISHED:
        return False
    stage = _stage(job, stage_name)
    return stage["status"] != SUCCEEDED and stage.get("attempt", 0) < attempt


def stage_attempt(job: dict[str, Any], stage_name: str) -> int:
    return int(_stage(job, stage_name).get("attempt", 0))


def stage_restarts(job: dict[str, Any], stage_name: str) -> int:
    """How many times the stage's message came back after its worker died."""
    return int(_stage(job, stage_name).get("restarts", 0))


def heartbeat(conn: Connection, job_id: str, stage_name: str, attempt: int,
              progress: dict[str, Any] | None = None) -> bool:
    """Refresh the holder's heartbeat; False when the stage was taken over or finished."""
    job = get(conn, job_id, for_update=True)
    if not owns_stage(job, stage_name, attempt):
        return False
    assert job is not None
    now = utcnow()
    _stage(job, stage_name)["heartbeat_at"] = isoformat(now)
    values: dict[str, Any] = {"stages": job["stages"], "updated_at": now}
    if progress is not None:
        values["progress"] = progress
    _set(conn, job_id, values)
    return True


def finish_stage(
    conn: Connection,
    job: dict[str, Any],
    stage_name: str,
    *,
    records_in: int,
    records_out: int,
    result: dict[str, Any],
    job_result: dict[str, Any] | None = None,
    progress: dict[str, Any] | None = None,
) -> bool:
    """Record a stage's success; returns True when it was the job's last stage."""
    now = utcnow()
    stage = _stage(job, stage_name)
    stage.update(
        status=SUCCEEDED, records_in=records_in, records_out=records_out,
        finished_at=isoformat(now), result=result,
    )
    last = job["stages"][-1]["name"] == stage_name
    values: dict[str, Any] = {"stages": job["stages"], "updated_at": now, "progress": progress,
                              "status": job["status"], "started_at": job["started_at"]}
    if last:
        values.update(status=SUCCEEDED, finished_at=now, result=job_result or result)
    _set(conn, job["id"], values)
    return last


def fail(
    conn: Connection,
    job_id: str,
    stage_name: str | None,
    code: str,
    message: str,
    details: Any = None,
    result: dict[str, Any] | None = None,
    locked: dict[str, Any] | None = None,
) -> None:
    """Fail the job at `stage_name`. `locked`: the job row as this transaction holds it
    (read and locked, with changes not yet written, as a landed carry's), else read."""
    job = locked if locked is not None else get(conn, job_id, for_update=True)
    if job is None or job["status"] in FINISHED:
        return
    now = utcnow()
    if stage_name is not None:
        stage = _stage(job, stage_name)
        stage.update(status=FAILED, finished_at=isoformat(now))
        if result is not None:
            stage["result"] = result
    _set(conn, job_id, {
        "status": FAILED, "stages": job["stages"], "finished_at": now, "updated_at": now,
        "started_at": job["started_at"],
        "error": {"code": code, "message": message, "details": details}, "result": result,
    })


def set_records_count(conn: Connection, job_id: str, count: int) -> None:
    conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
        records_count=count))


def mark_enqueued(conn: Connection, job_id: str, delta: int = 1) -> None:
    conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
        enqueue_count=jobs_table.c.enqueue_count + delta, updated_at=func.now()))


def to_public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the HTTP contract shows it."""
    public = {
        "job_id": job["id"],
        "kind": job["kind"],
        "status": job["status"],
        "data_type": job["data_type"],
        "source": job["source"],
        "records_count": job["records_count"],
        "stages": job["stages"],
        "result": job["result"],
        "error": job["error"],
        "created_at": isoformat(job["created_at"]),
        "started_at": isoformat(job["started_at"]),
        "finished_at": isoformat(job["finished_at"]),
    }
    if job.get("progress"):
        public["progress"] = job["progress"]
    return public
