"""Meta (Facebook) Ads Insights rows -> canonical ad records.

Accepted: `{"records": [...]}` or the Insights response `{"data": [...], "paging": {...}}`.
Numbers arrive as strings (coercion converts them); ids, names, breakdowns pass through.

Conversions. Meta has no single conversions number: `actions` and `action_values` are
lists of `{"action_type", "value", "1d_click", ...}` and one purchase is reported under
several action types at once (`offsite_conversion.fb_pixel_purchase`, `purchase`,
`omni_purchase`, `onsite_web_purchase`, ...). Summing them counts a purchase two or three
times. So:

- `options["conversion_action_types"]` (a list) names the action types to count; their
  `value`s are summed. List only types that do not overlap, e.g. `["omni_purchase",
  "lead"]`, never `["purchase", "omni_purchase"]`.
- The default counts purchases once: the first type present in the row among
  `DEFAULT_CONVERSION_ACTION_TYPES` = omni_purchase (Meta's deduplicated count over
  website, app and offline: the "Purchases" column of Ads Manager), then purchase, then
  offsite_conversion.fb_pixel_purchase (older rows and pixel-only accounts). Exactly one
  of them is used per list, so nothing is double counted.

The same choice is applied to `action_values` for the conversion value. A row without
`actions` has no conversions (unknown, not zero); a row whose `actions` lack the types
has 0. The lists themselves are kept (in `extra`), so other action types are not lost.
`actions` may also be an object `{action_type: value}` (CSV columns `actions.<type>`) or
a JSON string (a CSV cell).

Meta's own ratios (ctr and cpc in percent / currency units, cpm, cpp, frequency) are kept
as `platform_<name>`: the pipeline recomputes ratios from the raw counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tasks import jsontext
from tasks.coerce import OutOfRange, to_decimal
from tasks.ingestion.adapters.base import PlatformAdapter, list_under

DEFAULT_CONVERSION_ACTION_TYPES = (
    "omni_purchase",
    "purchase",
    "offsite_conversion.fb_pixel_purchase",
)

_RENAMES = {
    "account_currency": "currency",
    "date_start": "date",
    "ctr": "platform_ctr",
    "cpc": "platform_cpc",
    "cpm": "platform_cpm",
    "cpp": "platform_cpp",
    "frequency": "platform_frequency",
    # The values of Meta's own `conversions` field (a list of action stats, not a number).
    "conversion_values": "platform_conversion_values",
}
_AUDIENCE_RENAMES = {
    **_RENAMES,
    "publisher_platform": "platform",
    "device_platform": "device",
}
# Names that send a row down the slow path; anything else is copied as it is.
_NATIVE_KEYS = frozenset({*_AUDIENCE_RENAMES, "actions", "action_values"})


class MetaAdsAdapter(PlatformAdapter):
    name = "meta_ads"
    data_types = frozenset({"campaign_performance", "ad_performance", "audience"})
    native_shape = 'the Insights response {"data": [...], "paging": {...}}'
    native_keys = _NATIVE_KEYS

    def native_rows(self, data: Any) -> Iterable[Any] | None:
        return list_under(data, "data")

    def is_native(self, row: Mapping[str, Any]) -> bool:
        # The Insights `conversions` field is itself an action list, unlike ours.
        return super().is_native(row) or _is_action_list(row.get("conversions"))

    def from_native(
        self, row: Mapping[str, Any], data_type: str, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        names = _AUDIENCE_RENAMES if data_type == "audience" else _RENAMES
        out = {names.get(key, key): value for key, value in row.items()}
        if _is_action_list(out.get("conversions")):
            out["platform_conversions"] = out.pop("conversions")
        types = options.get("conversion_action_types")
        if out.get("actions") is not None and out.get("conversions") is None:
            out["conversions"] = action_total(out["actions"], types, "actions")
        if out.get("action_values") is not None and out.get("conversion_value") is None:
            out["conversion_value"] = action_total(
                out["action_values"], types, "action_values")
        return out


def _is_action_list(value: Any) -> bool:
    # A canonical record sends conversions as 5 or "5"; Meta's own field is a list of actions.
    if value is None or isinstance(value, int | float):
        return False
    if isinstance(value, str):
        return value.lstrip().startswith(("[", "{"))
    return isinstance(value, list | Mapping)


def action_total(actions: Any, action_types: Any, field: str) -> Decimal:
    """Sum of `value` over the configured action types, or the default's first present type.

    ValueError (the record is refused with this message) when the list is malformed.
    """
    values = _action_values(actions, field)
    if action_types is None:
        for action_type in DEFAULT_CONVERSION_ACTION_TYPES:
            if action_type in values:
                return _number(values[action_type], field, action_type)
        return Decimal(0)
    if isinstance(action_types, str):
        action_types = (action_types,)
    if not isinstance(action_types, list | tuple):
        raise TypeError("ingestion option conversion_action_types must be a list of strings")
    total = Decimal(0)
    for action_type in action_types:
        if action_type in values:
            total += _number(values[action_type], field, action_type)
    return total


def _action_values(actions: Any, field: str) -> dict[str, Any]:
    """{action_type: value} from Meta's list, an already-keyed object, or JSON text of either."""
    if isinstance(actions, str | bytes):
        try:
            actions = jsontext.loads(actions) if actions.strip() else []
        except jsontext.DecodeError:
            raise ValueError(f"{field} is not a list of actions: {actions!r}") from None
    if isinstance(actions, Mapping):
        return dict(actions)
    if not isinstance(actions, list):
        raise ValueError(f"{field} must be a list of {{action_type, value}} objects")
    values: dict[str, Any] = {}
    for item in actions:
        if not isinstance(item, Mapping) or "action_type" not in item:
            raise ValueError(f"{field} must be a list of {{action_type, value}} objects, "
                             f"got {item!r}")
        # Meta lists a type once; if a type repeats (merged exports), its values add up.
        action_type = item["action_type"]
        if action_type in values:
            values[action_type] = _number(values[action_type], field, action_type) + _number(
                item.get("value"), field, action_type)
        else:
            values[action_type] = item.get("value")
    return values


def _number(value: Any, field: str, action_type: str) -> Decimal:
    try:
        number = to_decimal(value)
    except OutOfRange as exc:
        raise ValueError(f"{field}: {action_type}: {exc}") from None
    except ValueError:
        raise ValueError(f"{field}: {action_type} has a value that is not a number: "
                         f"{value!r}") from None
    return number if number is not None else Decimal(0)
