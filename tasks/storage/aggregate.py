"""Aggregation: `group_by` columns and `metrics` over the filtered rows.

A metric is either a numeric column, summed, or a declared ratio (ctr, cpc, roas, ...),
recomputed from the group's sums: a group's ctr is its summed clicks over its summed
impressions (times the ratio's scale); a zero or missing denominator gives null.
Averaging the stored per-row ratios would weigh a 10-impression day like a million one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Numeric, Table, cast, func

from tasks.datatypes import DECIMAL, INTEGER, DataType
from tasks.storage.filters import RetrievalError, queryable_columns, unknown_field

MAX_GROUP_BY = 8
MAX_METRICS = 32


@dataclass(frozen=True)
class Aggregation:
    group_by: list[str]
    metrics: list[str]
    # name -> labelled SQL expression, in output order (group columns, then metrics)
    outputs: dict[str, Any]
    # name -> kind, for sorting and cursor values
    kinds: dict[str, str]


def allowed_metrics(data_type: DataType) -> dict[str, str]:
    """Metric names and their kinds: every numeric column, and every declared ratio."""
    ratios = {m.name for m in data_type.metrics}
    sums = {name: kind for name, kind in queryable_columns(data_type).items()
            if kind in (INTEGER, DECIMAL) and name != "id" and name not in ratios}
    return {**sums, **{m.name: DECIMAL for m in data_type.metrics}}


def allowed_group_by(data_type: DataType) -> dict[str, str]:
    return {n: k for n, k in queryable_columns(data_type).items() if n != "id"}


def _names(part: str, names: Sequence[str], allowed: dict[str, str], maximum: int) -> list[str]:
    if len(names) > maximum:
        raise RetrievalError(f"at most {maximum} {part} fields", {"field": part,
                                                                  "maximum": maximum})
    out: list[str] = []
    for name in names:
        if name not in allowed:
            raise unknown_field(part, name, allowed)
        if name in out:
            raise RetrievalError(f"{part} field {name!r} given twice", {"field": part})
        out.append(name)
    return out


def build(
    data_type: DataType, table: Table, group_by: Sequence[str], metrics: Sequence[str]
) -> Aggregation:
    groups = _names("group_by", group_by, allowed_group_by(data_type), MAX_GROUP_BY)
    metric_kinds = allowed_metrics(data_type)
    chosen = _names("metrics", metrics, metric_kinds, MAX_METRICS)
    clash = set(groups) & set(chosen)
    if clash:
        raise RetrievalError(f"{sorted(clash)[0]!r} is both grouped by and aggregated",
                             {"field": "metrics"})
    ratios = {m.name: m for m in data_type.metrics}
    columns = queryable_columns(data_type)
    outputs: dict[str, Any] = {name: table.c[name].label(name) for name in groups}
    for name in chosen:
        ratio = ratios.get(name)
        if ratio is None:
            total = func.sum(table.c[name])
            # sum(bigint) is numeric in PostgreSQL; counts stay integers in the answer.
            outputs[name] = (cast(total, BigInteger) if columns[name] == INTEGER
                             else total).label(name)
            continue
        numerator = cast(func.sum(table.c[ratio.numerator]), Numeric)
        if ratio.scale != 1:
            numerator = numerator * ratio.scale
        outputs[name] = (
            numerator / func.nullif(func.sum(table.c[ratio.denominator]), 0)
        ).label(name)
    kinds = {**{g: columns[g] for g in groups}, **{m: metric_kinds[m] for m in chosen}}
    return Aggregation(groups, chosen, outputs, kinds)
