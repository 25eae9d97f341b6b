"""Runs one stage of a job: claim, read input by reference a chunk at a time, call the
step, save, record.

The stage's output, its quarantined records and its status are written in one
transaction, so a crash at any point leaves the stage either done or to be redone.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from tasks import carry as carried
from tasks import progress, stats
from tasks.carry import BadCarry, CarriedSink, Carry
from tasks.celery_app import TASK_NAMES
from tasks.chunks import InputHead, StageInput, StageSink, lock_job_with_input
from tasks.stage import StageFailure, StageOutput
from tasks.storage import db, jobs, payloads, quarantine

log = logging.getLogger(__name__)

# A stage's work: reads its input, writes what goes on and what is refused to the sink
# (or returns them in the StageOutput), and returns the stage's result.
Step = Callable[[Connection, dict[str, Any], StageInput, StageSink], StageOutput]

# A stage whose holder has not beaten its heartbeat for this long is presumed dead.
DEFAULT_STALE_SECONDS = 120.0
# A stage whose message came back this many times after its worker died fails its job
# (see run_stage).
DEFAULT_MAX_RESTARTS = 5

# Stages with at most this many input records run in the transaction that claims them
# (see run_stage): a chunk's work takes well under a second.
ONE_TRANSACTION_RECORDS = payloads.DEFAULT_CHUNK

# Options of every stage task: late acks so a lost worker means a redelivery.
STAGE_TASK_OPTIONS: dict[str, Any] = {"bind": True, "max_retries": 8, "acks_late": True}


def _pipeline_result(job: dict[str, Any], last: dict[str, Any], rejected: int) -> dict[str, Any]:
    """The job's overall result: the last stage's result plus what every stage counted,
    so that every record received is accounted for: stored, rejected, or removed as a
    duplicate of a later one (dedup in the process stage)."""
    results = [s["result"] or {} for s in job["stages"]]
    refused = sum(r.get("records_refused", 0) + r.get("invalid_count", 0) for r in results)
    return {
        **last,
        "records_received": job["records_count"],
        "records_rejected": refused + rejected,
        "duplicates_removed": sum(r.get("duplicates_removed", 0) for r in results),
    }


class _Superseded(Exception):
    """Another task took the stage over while this one was working."""


class Heartbeat:
    """Refreshes the stage's heartbeat from a thread while the stage runs, so the recovery
    sweep and other deliveries can tell a live holder from a dead one."""

    def __init__(self, job_id: str, stage_name: str, attempt: int, interval: float) -> None:
        self.job_id, self.stage_name, self.attempt = job_id, stage_name, attempt
        self.interval = interval
        self._stop = threading.Event()
        # The job's log context (job id, stage) follows the beat into its thread.
        self._thread = threading.Thread(target=contextvars.copy_context().run,
                                        args=(self._beat,), name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with db.get_engine().begin() as conn:
                    if not jobs.heartbeat(conn, self.job_id, self.stage_name, self.attempt):
                        return
            except Exception:  # a database outage: the stage itself will see and retry it
                log.warning("job %s: heartbeat failed", self.job_id, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def run_stage(
    job_id: str, stage_name: str, step: Step, *, claimant: str | None = None,
    stale_seconds: float = DEFAULT_STALE_SECONDS, redelivered: bool = False,
    max_restarts: int = DEFAULT_MAX_RESTARTS, carry: Carry | None = None,
    pass_on: bool = False,
) -> dict[str, Any]:
    """Run one stage of a job; returns a small summary (never the records).

    A stage whose input fits in one chunk runs in the transaction that claims it, with
    the job row locked until it commits: nothing else can take it, so it needs neither
    a committed claim nor a heartbeat (a crash rolls it all back, and the message or the
    recovery sweep runs it again). A longer stage commits its claim first and keeps a
    heartbeat while it works, so that the sweep can tell a live holder from a dead one.

    A restart is counted on the stage: a `redelivered` message (the broker put it back
    because its worker died running it), or a stage taken over from another task whose
    heartbeat went stale (the sweep sends it again after a worker was killed by the hard
    time limit, which acks rather than redelivers). A restarted stage always commits its
    claim first, so that the count survives the next death: past `max_restarts` the job
    fails instead of crashing worker after worker for ever. Retries after database errors
    (the same task) are not counted.

    `carry` (tasks/carry.py): the stage's input came in its message, with what the stages
    before it did. With `pass_on` (the chain's next message can take a carry), a stage
    that is not its job's last, whose message is not a redelivery, runs with nothing
    written and returns the next stage's carry under "carry". Every other carried stage
    lands the carry in its claim's transaction, then runs by reference.
    """
    if carry is not None and pass_on and not redelivered and not carry.is_last(stage_name):
        passed = _run_carried(job_id, stage_name, step, carry)
        if passed is not None:
            return passed
        # Its output is too big to carry on: the stage runs again, by reference.
    engine = db.get_engine()
    claimant = claimant or f"local-{uuid.uuid4()}"
    started = time.perf_counter()
    job: dict[str, Any] | None = None
    try:
        with engine.begin() as conn:
            if carry is None:
                locked, head = lock_job_with_input(conn, job_id, stage_name)
            else:  # the input is the carry's: the row alone, locked
                locked, head = jobs.get(conn, job_id, for_update=True), carry.head()
                if locked is not None and not carried.land(conn, locked, carry):
                    log.info("job %s: stage %s: its carry steps aside (another delivery has "
                             "claimed the job's stages, or it has finished)", job_id, stage_name)
                    return {"job_id": job_id, "stage": stage_name, "skipped": True}
            before = 0 if locked is None else jobs.stage_restarts(locked, stage_name)
            job = None if locked is None else jobs.claim_stage(
                conn, job_id, stage_name, claimant, stale_seconds, write=False,
                redelivered=redelivered, locked=locked)
            if job is None:
                log.info("job %s: stage %s skipped (done, finished or held by another task)",
                         job_id, stage_name)
                return {"job_id": job_id, "stage": stage_name, "skipped": True}
            attempt = jobs.stage_attempt(job, stage_name)
            restarts = jobs.stage_restarts(job, stage_name)
            restarted = restarts > before
            interrupted = restarted and restarts > max_restarts
            if interrupted:
                _stop_interrupted(conn, job, stage_name, restarts)
            else:
                log.info("job %s: stage %s started (attempt %d)", job_id, stage_name, attempt)
                total = jobs.input_count(job, stage_name)
                short = total <= ONE_TRANSACTION_RECORDS and not restarted
                if short:
                    with progress.Tracker(job_id, stage_name, attempt, total,
                                          write_row=False):
                        output, sink = _work(conn, job, stage_name, step, attempt,
                                             head, locked=True)
                else:
                    jobs.write_claim(conn, job)
                    if carry is not None:
                        carried.keep_input(conn, job_id, carry)
        if interrupted:
            _count_failure(engine, job, stage_name, started)
            return {"job_id": job_id, "stage": stage_name, "failed": INTERRUPTED}
        if not short:
            with (Heartbeat(job_id, stage_name, attempt,
                            max(0.5, min(10.0, stale_seconds / 4))),
                  progress.Tracker(job_id, stage_name, attempt, total),
                  engine.begin() as conn):
                output, sink = _work(conn, job, stage_name, step, attempt, head,
                                     locked=False)
    except _Superseded:
        log.warning("job %s: stage %s was taken over; attempt %d discarded",
                    job_id, stage_name, attempt)
        return {"job_id": job_id, "stage": stage_name, "superseded": True}
    except StageFailure as failure:
        with engine.begin() as conn:
            # Two deliveries of a stage can both fail on the same batch: only the first
            # failure is recorded, so that its refused records are quarantined once.
            current = jobs.get(conn, job_id, for_update=True)
            recorded = jobs.may_record_failure(current, stage_name, attempt, claimed=not short)
            if recorded and short and carry is not None:
                # The carry it landed was rolled back with the work: landed again.
                recorded = current is not None and carried.land(conn, current, carry)
            if recorded:
                quarantine.save(conn, job_id, stage_name, failure.rejected)
                jobs.fail(conn, job_id, stage_name, failure.code, failure.message,
                          failure.details, failure.result, locked=current)
        if not recorded:
            log.warning("job %s: stage %s attempt %d failed (%s) after another task had "
                        "recorded the stage's outcome or taken it over; not recorded",
                        job_id, stage_name, attempt, failure.code)
            return {"job_id": job_id, "stage": stage_name, "superseded": True}
        log.warning("job %s: stage %s failed: %s", job_id, stage_name, failure.message)
        _count_failure(engine, job, stage_name, started)
        return {"job_id": job_id, "stage": stage_name, "failed": failure.code}
    if output.failure is not None:
        log.warning("job %s: stage %s failed: %s", job_id, stage_name, output.failure.message)
        _count_failure(engine, job, stage_name, started)
        return {"job_id": job_id, "stage": stage_name, "failed": output.failure.code}
    # After the commit, in a short transaction of its own: counters must never hold up
    # (or fail) the stage, and a hot counter row is then locked only for an instant.
    stats.record_after(engine, stage=stage_name, data_type=job["data_type"],
                       outcome=stats.SUCCEEDED, records_in=output.records_in,
                       records_out=_records_out(output, sink),
                       seconds=time.perf_counter() - started)
    log.info("job %s: stage %s succeeded", job_id, stage_name)
    return {"job_id": job_id, "stage": stage_name, "records_out": sink.written}


def _run_carried(job_id: str, stage_name: str, step: Step,
                 carry: Carry) -> dict[str, Any] | None:
    """A carried stage's work, with nothing written (see run_stage): its summary with
    the next stage's carry; None when that would be too big to carry."""
    started, started_at = time.perf_counter(), jobs.isoformat(jobs.utcnow())
    job = carry.job_row()
    # Reads only (the process stage's lookups), each a statement of its own.
    with (db.autocommit_engine().connect() as conn,
          progress.Tracker(job_id, stage_name, 1, carry.records, write_row=False)):
        source = StageInput(conn, job_id, carry.input_name, carry.head())
        sink = CarriedSink(conn, job_id, stage_name)
        try:
            output = step(conn, job, source, sink)
        except StageFailure as failure:
            # As by reference, where the failure rolls back what the sink took: only the
            # records the failure names are quarantined.
            return _fail_carried(job_id, stage_name, carry, failure,
                                 [(r, 0) for r in failure.rejected], started)
    if source.nul_replaced:
        log.warning("job %s: %d NUL characters in the batch replaced by U+FFFD",
                    job_id, source.nul_replaced)
        output.result["nul_characters_replaced"] = source.nul_replaced
    sink.write(output.records)
    sink.reject(output.rejected)
    if output.failure is not None:
        return _fail_carried(job_id, stage_name, carry, output.failure, sink.quarantined,
                             started)
    records_out = _records_out(output, sink)
    following = carry.passed_on(
        {"name": stage_name, "started_at": started_at,
         "finished_at": jobs.isoformat(jobs.utcnow()), "records_in": output.records_in,
         "records_out": records_out, "result": output.result},
        payloads.encode(sink.records), sink.written,
        carried.carried_rejects(stage_name, sink.quarantined))
    if following is None:
        log.info("job %s: stage %s: output too big to carry; run by reference",
                 job_id, stage_name)
        return None
    stats.record_after(db.get_engine(), stage=stage_name, data_type=job["data_type"],
                       outcome=stats.SUCCEEDED, records_in=output.records_in,
                       records_out=records_out, seconds=time.perf_counter() - started)
    # One line for a stage of a millisecond: its start would say nothing more.
    log.info("job %s: stage %s succeeded (output carried) in %.1f ms", job_id, stage_name,
             1000 * (time.perf_counter() - started))
    return {"job_id": job_id, "stage": stage_name, "records_out": sink.written,
            "carry": following.to_message()}


def _fail_carried(job_id: str, stage_name: str, carry: Carry, failure: StageFailure,
                  refused: list[tuple[quarantine.Rejected, int]],
                  started: float) -> dict[str, Any]:
    """A carried stage's failure, recorded with what the stages before it did; `refused`:
    the stage's own quarantined records, each with its chunk's offset."""
    engine = db.get_engine()
    with engine.begin() as conn:
        current = jobs.get(conn, job_id, for_update=True)
        recorded = current is not None and carried.land(conn, current, carry)
        if recorded:
            quarantine.save(conn, job_id, stage_name, [
                quarantine.Rejected(r.index + offset, r.record, r.reasons)
                for r, offset in refused])
            jobs.fail(conn, job_id, stage_name, failure.code, failure.message,
                      failure.details, failure.result, locked=current)
    if not recorded:
        log.warning("job %s: stage %s failed (%s) after another delivery had claimed the "
                    "job's stages; not recorded", job_id, stage_name, failure.code)
        return {"job_id": job_id, "stage": stage_name, "superseded": True}
    log.warning("job %s: stage %s failed: %s", job_id, stage_name, failure.message)
    stats.record_after(engine, stage=stage_name, data_type=carry.job["data_type"],
                       outcome=stats.FAILED, records_in=carry.records, records_out=0,
                       seconds=time.perf_counter() - started)
    return {"job_id": job_id, "stage": stage_name, "failed": failure.code}


INTERRUPTED = "stage_interrupted"


def _stop_interrupted(conn: Connection, job: dict[str, Any], stage_name: str,
                      restarts: int) -> None:
    job_id = job["id"]
    log.error("job %s: stage %s came back %d times after its worker died; the job is stopped",
              job_id, stage_name, restarts)
    jobs.fail(conn, job_id, stage_name, INTERRUPTED,
              f"stage {stage_name} came back {restarts} times after the worker running it "
              f"died or stopped, and never finished (a record that crashes the worker process "
              f"does that, and so does a stage killed by the time limit every time). The job "
              f"is stopped rather than retried for ever; its raw batch is kept.",
              {"restarts": restarts}, locked=job)


def _records_out(output: StageOutput, sink: StageSink) -> int:
    return sink.written if output.records_out is None else output.records_out


def _work(conn: Connection, job: dict[str, Any], stage_name: str, step: Step, attempt: int,
          head: InputHead, *, locked: bool) -> tuple[StageOutput, StageSink]:
    """The stage's work and its outcome, in the caller's transaction. `head`: what the
    claim read of the stage's input. `locked`: the job row has been locked by this
    transaction since the claim (else ownership is checked before anything is recorded)."""
    job_id = job["id"]
    is_last = job["stages"][-1]["name"] == stage_name
    if is_last:  # the stored rows and the job's success: never lost once said
        db.durable_commit(conn)
    source = StageInput(conn, job_id, jobs.input_name(job, stage_name), head)
    # The last stage's output goes nowhere: it has no next stage to read it.
    sink = StageSink(conn, job_id, stage_name, keep_records=not is_last, replace=attempt > 1)
    output = step(conn, job, source, sink)
    if source.nul_replaced:
        log.warning("job %s: %d NUL characters in the batch replaced by U+FFFD",
                    job_id, source.nul_replaced)
        output.result["nul_characters_replaced"] = source.nul_replaced
    sink.write(output.records)  # what a step returned rather than wrote
    sink.reject(output.rejected)
    sink.close()
    current = job
    if not locked:
        # Commit only if no one took the stage over meanwhile (we were presumed dead).
        current = jobs.get(conn, job_id, for_update=True)  # type: ignore[assignment]
        if not jobs.owns_stage(current, stage_name, attempt):
            raise _Superseded  # rolls back everything this attempt wrote
    if output.failure is not None:  # the job fails; what was quarantined stays
        failure = output.failure
        jobs.fail(conn, job_id, stage_name, failure.code, failure.message,
                  failure.details, failure.result, locked=current)
    else:
        jobs.finish_stage(
            conn, current, stage_name, records_in=output.records_in,
            records_out=_records_out(output, sink), result=output.result,
            job_result=(_pipeline_result(current, output.result, sink.rejected)
                        if is_last else None),
            progress=jobs.progress_snapshot(stage_name, output.records_in, output.records_in),
        )
    if is_last or output.failure is not None:
        # Intermediate outputs are no longer needed; the raw batch stays until its
        # retention ends (tasks/maintenance.py).
        payloads.discard(conn, job_id, [s["name"] for s in job["stages"]])
    return output, sink


def _count_failure(engine: Any, job: dict[str, Any] | None, stage_name: str,
                   started: float) -> None:
    if job is None:
        return
    stats.record_after(engine, stage=stage_name, data_type=job["data_type"],
                       outcome=stats.FAILED, records_in=jobs.input_count(job, stage_name),
                       records_out=0, seconds=time.perf_counter() - started)


def fail_job(job_id: str, stage_name: str, code: str, message: str,
             carry: Carry | None = None) -> None:
    """Fail the job at `stage_name`; with a `carry`, what the carried stages before it did
    is recorded too (unless another delivery has claimed the job's stages)."""
    with db.get_engine().begin() as conn:
        current = jobs.get(conn, job_id, for_update=True)
        if current is not None and carry is not None and \
                not carried.land(conn, current, carry):
            # Another delivery has claimed the job's stages and redoes the carried ones
            # by reference: the job is its to finish or fail.
            log.warning("job %s: stage %s failed (%s) after another delivery had claimed "
                        "the job's stages; not recorded", job_id, stage_name, code)
            return
        jobs.fail(conn, job_id, stage_name, code, message, locked=current)


def run_celery_stage(task: Any, job_id: str, stage_name: str, step: Step,
                     carry: Any = None) -> dict[str, Any]:
    """`run_stage` inside a Celery task: retry database outages with backoff and jitter,
    and mark the job failed (never loop) on a permanent error or when retries run out.
    `carry`: the message's carry (tasks/carry.py); the next stage's goes into the chain's
    next message."""
    stale = float(task.app.conf.get("pipeline_stale_job_seconds") or DEFAULT_STALE_SECONDS)
    max_restarts = int(task.app.conf.get("pipeline_max_stage_restarts") or DEFAULT_MAX_RESTARTS)
    # Set by the broker on a message put back after its worker died (acks late).
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    given = _read_carry(job_id, stage_name, carry)
    following = _next_message(task, job_id, stage_name, given) if given is not None else None
    try:
        # A retry (after a database error) lands its carry and goes by reference, as a
        # redelivery does: an earlier try may have committed a claim with it.
        summary = run_stage(job_id, stage_name, step, claimant=task.request.id,
                            stale_seconds=stale, redelivered=redelivered,
                            max_restarts=max_restarts, carry=given,
                            pass_on=following is not None and not task.request.retries)
    except (OperationalError, InterfaceError) as exc:
        if _beyond_postgres_limits(exc):  # the same data would fail again: not an outage
            _fail_quietly(job_id, stage_name, VALUE_TOO_LARGE,
                          f"a value is beyond what PostgreSQL can store or index: {exc.orig}",
                          given)
            raise
        retries = task.request.retries
        if retries >= task.max_retries:
            _fail_quietly(job_id, stage_name, "database_unavailable",
                          f"database unreachable after {retries} retries: {exc.orig}", given)
            raise
        countdown = min(60.0, 0.5 * 2 ** retries) * random.uniform(0.5, 1.5)
        log.warning("job %s: stage %s: database error, retry %d in %.1fs: %s",
                    job_id, stage_name, retries + 1, countdown, exc.orig)
        hidden = {} if given is None else {"kwargsrepr": carried.describe(carry)}
        raise task.retry(exc=exc, countdown=countdown, **hidden) from exc
    except SoftTimeLimitExceeded:
        _fail_quietly(job_id, stage_name, "time_limit", "the stage ran past its time limit",
                      given)
        raise
    except Exception as exc:
        log.exception("job %s: stage %s crashed", job_id, stage_name)
        _fail_quietly(job_id, stage_name, "internal_error", f"{type(exc).__name__}: {exc}",
                      given)
        raise
    passed = summary.pop("carry", None)
    if passed is not None and following is not None:
        # The chain sends its next message after this task returns, from this dict.
        following["kwargs"] = {**(following.get("kwargs") or {}), "carry": passed}
        # Task events (Flower) and logs show this instead of the records.
        following.setdefault("options", {})["kwargsrepr"] = carried.describe(passed)
    return summary


def _read_carry(job_id: str, stage_name: str, message: Any) -> Carry | None:
    if message is None:
        return None
    try:
        return Carry.from_message(job_id, message)
    except BadCarry as exc:
        # Run by reference: the recovery sweep resends a job whose stages wait for
        # an input that was never stored.
        log.error("job %s: stage %s: %s; ignored", job_id, stage_name, exc)
        return None


def _next_message(task: Any, job_id: str, stage_name: str,
                  carry: Carry) -> dict[str, Any] | None:
    """The chain's next message, as a dict this task may add a carry to: when it is the
    job's next stage (not a chain of someone else's making)."""
    chain = getattr(task.request, "chain", None)
    names = carry.job["stages"]
    if not chain or not isinstance(chain[-1], dict) or stage_name not in names[:-1]:
        return None
    following = chain[-1]
    expected = TASK_NAMES.get(names[names.index(stage_name) + 1])
    if following.get("task") != expected or list(following.get("args") or [])[:1] != [job_id]:
        return None
    return following


VALUE_TOO_LARGE = "value_too_large"


def _beyond_postgres_limits(exc: OperationalError | InterfaceError) -> bool:
    """SQLSTATE class 54, program limit exceeded: a key too long for its index, a row or
    an array too big. psycopg2 raises it as an OperationalError, like an outage."""
    return str(getattr(exc.orig, "pgcode", None) or "").startswith("54")


def _fail_quietly(job_id: str, stage_name: str, code: str, message: str,
                  carry: Carry | None = None) -> None:
    try:
        fail_job(job_id, stage_name, code, message, carry)
    except Exception:  # the database may be the thing that is down; the sweep catches up
        log.exception("job %s: could not record failure %s", job_id, code)
