"""The stats writer adds up the stages it writes together, one row per counter row."""

from tasks.stats import _summed


def _row(stage: str, bucket: int, records: int, seconds: float) -> dict:
    return {"stage": stage, "data_type": "campaign_performance", "outcome": "succeeded",
            "bucket": bucket, "records_in": records, "records_out": records - 1,
            "seconds": seconds}


def test_stages_of_one_counter_row_are_summed_and_rows_come_in_key_order():
    rows = _summed([_row("validate", 0, 10, 0.5), _row("ingest", 1, 3, 0.25),
                    _row("validate", 0, 5, 0.25), _row("ingest", 0, 1, 0.0)])
    assert [(r["stage"], r["bucket"]) for r in rows] == [
        ("ingest", 0), ("ingest", 1), ("validate", 0)]
    validate = rows[2]
    assert (validate["runs"], validate["records_in"], validate["records_out"],
            validate["seconds"]) == (2, 15, 13, 0.75)
    assert rows[0]["runs"] == rows[1]["runs"] == 1
