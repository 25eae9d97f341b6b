"""`processing_options`: checked once, before a job is accepted, and normalised for the core."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.datatypes import DataType

QUARANTINE = "quarantine"
KEEP = "keep"
ON_MISSING_RATE = (QUARANTINE, KEEP)

OPTION_NAMES = (
    "calculate_metrics",
    "enrich_with_audience_data",
    "target_currency",
    "on_missing_rate",
)


class ProcessingOptionError(ValueError):
    """Options the process stage cannot honour; `details` name the option and what is allowed."""

    def __init__(self, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.details = dict(details)


@dataclass(frozen=True)
class ProcessingOptions:
    calculate_metrics: bool = True
    enrich_with_audience_data: bool = False
    target_currency: str | None = None
    on_missing_rate: str = QUARANTINE


def _flag(options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None:  # JSON null means "the default", as an absent option does
        return default
    if not isinstance(value, bool):
        raise ProcessingOptionError(f"processing_options.{name} must be true or false",
                                    {"field": f"processing_options.{name}"})
    return value


def _currency(data_type: DataType, value: Any) -> str | None:
    if value is None:
        return None
    field = "processing_options.target_currency"
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()):
        raise ProcessingOptionError(
            "processing_options.target_currency must be a 3-letter ISO 4217 code such as EUR",
            {"field": field, "value": value},
        )
    if not data_type.money_fields:
        raise ProcessingOptionError(
            f"{data_type.name} has no money fields to convert",
            {"field": field, "data_type": data_type.name},
        )
    return value.upper()


def check_processing_options(
    data_type: DataType, options: Mapping[str, Any] | None
) -> ProcessingOptions:
    """The normalised options; raises ProcessingOptionError (a ValueError) for anything unknown."""
    if options is None:
        return ProcessingOptions()
    if not isinstance(options, Mapping):
        raise ProcessingOptionError("processing_options must be an object",
                                    {"field": "processing_options"})
    unknown = sorted(str(name) for name in options if name not in OPTION_NAMES)
    if unknown:
        raise ProcessingOptionError(
            f"unknown processing option {', '.join(unknown)}",
            {"field": f"processing_options.{unknown[0]}", "allowed": list(OPTION_NAMES)},
        )
    on_missing = options.get("on_missing_rate")
    if on_missing is None:
        on_missing = QUARANTINE
    if on_missing not in ON_MISSING_RATE:
        raise ProcessingOptionError(
            f"processing_options.on_missing_rate must be one of {', '.join(ON_MISSING_RATE)}",
            {"field": "processing_options.on_missing_rate", "allowed": list(ON_MISSING_RATE)},
        )
    return ProcessingOptions(
        calculate_metrics=_flag(options, "calculate_metrics", True),
        enrich_with_audience_data=_flag(options, "enrich_with_audience_data", False),
        target_currency=_currency(data_type, options.get("target_currency")),
        on_missing_rate=on_missing,
    )
