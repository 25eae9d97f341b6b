"""The process stage core: a pure function over one batch (see `in_place` for the exception).

Steps, in order: types normalised (the compiled kernel, equal to coerce_record), dedup on
the natural key (the last record wins, in the place of the first), currency conversion,
audience enrichment, derived metrics. Without a currency conversion the kernel computes
the ratios in the same pass (the same operations, from the same values). Database reads
go through `lookups` (one call per kind per batch), so the core itself does no I/O.

Platform-supplied values of derived columns (TikTok's ctr is a percentage, Meta's cpm is
its own) are never trusted: coercion here does not know those columns, so they land in
`extra` as they came, and the columns are computed from raw values or left null.
"""

from __future__ import annotations

import gc
from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tasks.coerce import FieldError
from tasks.datatypes import DataType
from tasks.processing.currency import convert_currency
from tasks.processing.enrichment import can_enrich, enrich_with_audience
from tasks.processing.kernel import Kernel
from tasks.processing.lookups import Lookups, NoLookups
from tasks.processing.metrics import (
    computed_names,
    derived_names,
    metrics_function,
    ratio_context,
    record_metrics_function,
)
from tasks.processing.options import ProcessingOptions, check_processing_options
from tasks.stage import StageOutput, utc_timestamp
from tasks.storage.quarantine import Rejected

_kernels: dict[tuple[str, bool, bool], Kernel] = {}


def input_columns(data_type: DataType) -> dict[str, str]:
    """The columns coercion keeps: all declared ones except the derived columns."""
    derived = set(derived_names(data_type))
    return {name: kind for name, kind in data_type.all_columns.items() if name not in derived}


def _kernel(data_type: DataType, ratios: bool, in_place: bool) -> Kernel:
    # One per data type and variant in a process: its compiled shapes serve every batch.
    key = (data_type.name, ratios, in_place)
    kernel = _kernels.get(key)
    if kernel is None or kernel.data_type is not data_type:
        kernel = _kernels[key] = Kernel(
            data_type, input_columns(data_type), ratios=ratios, in_place=in_place)
    return kernel


def natural_keys(records: Sequence[Any], data_type: DataType) -> Iterator[tuple[int, Any]]:
    """(position, natural key) of each record that converts, the last of each key within
    `records`: what a first pass over a chunked batch needs to find keys repeated across
    chunks. Converts in place (for a chunk read for this pass alone)."""
    with _gc_paused():
        found = _kernel(data_type, False, True).run(records)
    return ((index, key) for key, (index, _) in zip(found.keys, found.items, strict=True))


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC passes while a batch is built: it makes no cycles, but two tracked tuples
    per record (key and item) set off collections whose scans cost some 10% of the stage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _type_reasons(errors: list[FieldError]) -> list[dict[str, Any]]:
    return [
        {"rule": "type" if field else "object", "field": field or None, "value": value,
         "message": message}
        for field, value, message in errors
    ]


def process(
    records: Sequence[Any],
    data_type: DataType,
    options: Mapping[str, Any] | ProcessingOptions | None = None,
    lookups: Lookups | None = None,
    *,
    in_place: bool = False,
    superseded: Container[int] = (),
) -> StageOutput:
    """Process one batch; raises ProcessingOptionError for options it does not know.

    `records` are left untouched, unless `in_place`: then the records that go on are
    converted in their own dicts (faster; for a caller that owns the batch, as the Celery
    stage does). Refused records are always left as they came.

    `superseded`: positions of records that a later record of the same natural key,
    elsewhere in a batch processed in chunks, replaces; they are dropped as duplicates.
    """
    opts = (options if isinstance(options, ProcessingOptions)
            else check_processing_options(data_type, options))
    lookups = lookups if lookups is not None else NoLookups()
    extra: dict[str, Any] = {}
    with _gc_paused():
        # Ratios in the kernel's pass unless a conversion must change the money first.
        fused = opts.calculate_metrics and not opts.target_currency
        first = _kernel(data_type, fused, in_place).run(records)
        rejected = [Rejected(i, raw, _type_reasons(errors)) for i, raw, errors in first.bad]
        items = first.items
        duplicates = first.duplicates
        if superseded:
            items = [item for item in items if item[0] not in superseded]
            duplicates += len(first.items) - len(items)

        converted = 0
        if opts.target_currency:
            conversion = convert_currency(items, data_type, opts.target_currency, lookups,
                                          opts.on_missing_rate)
            items = conversion.records
            rejected += [Rejected(index, record, reasons)
                         for index, record, reasons in conversion.refused]
            converted = conversion.converted
            extra.update(conversion.counts(opts.target_currency))

        enriched = 0
        if opts.enrich_with_audience_data:
            if can_enrich(data_type):
                enrichment = enrich_with_audience(items, data_type, lookups)
                enriched = enrichment.enriched
                extra["enrichment_unmatched"] = enrichment.unmatched
            else:
                extra["enrichment_skipped"] = f"{data_type.name} records are not ad campaigns"

        out = [record for _, record in items]
        metrics: list[str] = []
        if opts.calculate_metrics:
            compute = record_metrics_function(data_type) if fused else metrics_function(data_type)
            if compute is not None:
                with ratio_context():
                    for record in out:
                        compute(record)
            metrics = computed_names(data_type)
    rejected.sort(key=lambda r: r.index)
    return StageOutput(
        records=out,
        rejected=rejected,
        records_in=len(records),
        result={
            "processed_at": utc_timestamp(),
            "records_count": len(out),
            "duplicates_removed": duplicates,
            "records_refused": len(rejected),
            "metrics_calculated": opts.calculate_metrics,
            "metrics": metrics,
            "enriched": enriched,
            "converted": converted,
            **extra,
            "status": "success",
        },
    )
