"""The validate stage passes on the records it accepted as they came, not converted (so
its output can be stored as a reference to its input: tasks/chunks.py StageSink.pass_on).
The process stage converts them itself, and must store the same columns as it would
from validation's canonical records: this holds it to that on many random batches, each
value's type and repr compared, every value read back from JSON as a stored chunk is.
Only `extra` differs: a field the process stage does not take as given (a derived ratio,
an original_* column of currency conversion) is kept there as it was sent."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tasks import jsontext
from tasks.datatypes import AD_PERFORMANCE, CAMPAIGN_PERFORMANCE, CRM_DEALS, WEB_ANALYTICS, DataType
from tasks.processing.core import process
from tasks.validation.core import Validation
from tests.unit.test_validation_coercion import random_batch, strict


def stored(records: list[Any]) -> list[Any]:
    """Records as a stage after the one that wrote them reads them."""
    return jsontext.loads(jsontext.dumps(records))


def processed(records: list[Any], data_type: DataType) -> tuple[list, list, dict]:
    output = process(stored(records), data_type, {"calculate_metrics": True})
    return ([{**strict(r), "extra": sorted(r.get("extra") or {})} for r in output.records],
            [(r.index, r.reasons) for r in output.rejected],
            {k: v for k, v in output.result.items() if not k.endswith("_at")})


@pytest.mark.parametrize("data_type",
                         [CAMPAIGN_PERFORMANCE, AD_PERFORMANCE, CRM_DEALS, WEB_ANALYTICS],
                         ids=lambda d: d.name)
def test_process_makes_the_same_of_ingested_records_as_of_validated_ones(
        data_type: DataType) -> None:
    rng = random.Random(20261207)
    compared = passed = 0
    for _ in range(400):
        ingested = stored(random_batch(data_type, rng))
        valid, rejected = Validation(data_type, None).check(stored(ingested))
        refused = {r.index for r in rejected}
        kept = [r for i, r in enumerate(ingested) if i not in refused]
        assert len(kept) == len(valid)
        assert processed(kept, data_type) == processed(valid, data_type), ingested
        compared += len(ingested)
        passed += len(valid)
    assert passed > 0.1 * compared  # a good share of the records go on
