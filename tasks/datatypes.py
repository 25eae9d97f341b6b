"""Data types, each declared once.

A declaration names the canonical columns and their types, the natural key used for
upserts, the default validation rules and the derived metrics. Tables, retrieval
filters, coercion and docs are all derived from these objects, so table and column
names in SQL only ever come from here, never from a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column kinds understood by coercion, storage and retrieval.
TEXT = "text"
INTEGER = "integer"
DECIMAL = "decimal"
DATE = "date"
DATETIME = "datetime"
BOOLEAN = "boolean"
JSON = "json"

COLUMN_KINDS = (TEXT, INTEGER, DECIMAL, DATE, DATETIME, BOOLEAN, JSON)

# Lineage columns every stored row carries, set by the store stage.
LINEAGE_COLUMNS: dict[str, str] = {
    "job_id": TEXT,
    # When the batch that wrote the row was accepted: of two writes of one key, the
    # batch accepted later wins, whatever order the workers store them in.
    "accepted_at": DATETIME,
    "ingested_at": DATETIME,
    "updated_at": DATETIME,
}
EXTRA_COLUMN = "extra"


@dataclass(frozen=True)
class Ratio:
    """A derived metric: numerator / denominator * scale; a zero or missing denominator is null."""

    name: str
    numerator: str
    denominator: str
    scale: int = 1


@dataclass(frozen=True)
class DataType:
    name: str
    columns: dict[str, str]
    natural_key: tuple[str, ...]
    required_fields: tuple[str, ...] = ()
    non_negative_fields: tuple[str, ...] = ()
    metrics: tuple[Ratio, ...] = ()
    date_column: str | None = None
    money_fields: tuple[str, ...] = ()
    table_aliases: tuple[str, ...] = ()
    description: str = ""
    metric_columns: dict[str, str] = field(default_factory=dict)

    @property
    def table_name(self) -> str:
        return self.name

    @property
    def numeric_fields(self) -> tuple[str, ...]:
        return tuple(c for c, k in self.columns.items() if k in (INTEGER, DECIMAL))

    @property
    def all_columns(self) -> dict[str, str]:
        """Every stored column except the surrogate id: canonical, derived, extra and lineage."""
        cols = dict(self.columns)
        cols.update({m.name: DECIMAL for m in self.metrics})
        cols.update(self.metric_columns)
        cols[EXTRA_COLUMN] = JSON
        cols.update(LINEAGE_COLUMNS)
        return cols


_AD_METRICS = (
    Ratio("ctr", "clicks", "impressions"),
    Ratio("cpc", "spend", "clicks"),
    Ratio("cpm", "spend", "impressions", 1000),
    Ratio("cpa", "spend", "conversions"),
    Ratio("conversion_rate", "conversions", "clicks"),
    Ratio("roas", "conversion_value", "spend"),
    Ratio("frequency", "impressions", "reach"),
)

_AD_FACTS = {
    "currency": TEXT,
    "spend": DECIMAL,
    "impressions": INTEGER,
    "clicks": INTEGER,
    "reach": INTEGER,
    "conversions": DECIMAL,
    "conversion_value": DECIMAL,
}

# Kept by currency conversion (the values as they came) and by audience enrichment.
_CONVERTED_AD_COLUMNS = {
    "original_currency": TEXT,
    "original_spend": DECIMAL,
    "original_conversion_value": DECIMAL,
}
_ENRICHED_COLUMNS = {"audience": JSON}

_AD_NON_NEGATIVE = ("spend", "impressions", "clicks", "reach", "conversions", "conversion_value")

CAMPAIGN_PERFORMANCE = DataType(
    name="campaign_performance",
    description="Daily performance of an ad campaign on one platform account.",
    columns={
        "source": TEXT,
        "account_id": TEXT,
        "campaign_id": TEXT,
        "campaign_name": TEXT,
        "date": DATE,
        **_AD_FACTS,
    },
    natural_key=("source", "account_id", "campaign_id", "date"),
    required_fields=("campaign_id",),
    non_negative_fields=_AD_NON_NEGATIVE,
    metrics=_AD_METRICS,
    date_column="date",
    money_fields=("spend", "conversion_value"),
    table_aliases=("campaigns",),
    metric_columns={**_CONVERTED_AD_COLUMNS, **_ENRICHED_COLUMNS},
)

AD_PERFORMANCE = DataType(
    name="ad_performance",
    description="Daily performance at ad set / ad grain.",
    columns={
        "source": TEXT,
        "account_id": TEXT,
        "campaign_id": TEXT,
        "campaign_name": TEXT,
        "adset_id": TEXT,
        "adset_name": TEXT,
        "ad_id": TEXT,
        "ad_name": TEXT,
        "date": DATE,
        **_AD_FACTS,
    },
    natural_key=("source", "account_id", "campaign_id", "adset_id", "ad_id", "date"),
    required_fields=("campaign_id",),
    non_negative_fields=_AD_NON_NEGATIVE,
    metrics=_AD_METRICS,
    date_column="date",
    money_fields=("spend", "conversion_value"),
    table_aliases=("ads",),
    metric_columns={**_CONVERTED_AD_COLUMNS, **_ENRICHED_COLUMNS},
)

AUDIENCE = DataType(
    name="audience",
    description="Audience segments of a campaign: one row per breakdown value set.",
    columns={
        "source": TEXT,
        "account_id": TEXT,
        "campaign_id": TEXT,
        "date": DATE,
        "age": TEXT,
        "gender": TEXT,
        "country": TEXT,
        "region": TEXT,
        "platform": TEXT,
        "device": TEXT,
        "audience_size": INTEGER,
        **_AD_FACTS,
    },
    natural_key=(
        "source", "account_id", "campaign_id", "date",
        "age", "gender", "country", "region", "platform", "device",
    ),
    required_fields=("campaign_id",),
    non_negative_fields=("audience_size", *_AD_NON_NEGATIVE),
    metrics=_AD_METRICS,
    date_column="date",
    money_fields=("spend", "conversion_value"),
    table_aliases=("audiences",),
    metric_columns=dict(_CONVERTED_AD_COLUMNS),
)

CRM_CONTACTS = DataType(
    name="crm_contacts",
    description="CRM contacts and leads (HubSpot contacts, Salesforce leads).",
    columns={
        "source": TEXT,
        "contact_id": TEXT,
        "email": TEXT,
        "first_name": TEXT,
        "last_name": TEXT,
        "company": TEXT,
        "country": TEXT,
        "lifecycle_stage": TEXT,
        "lead_status": TEXT,
        "lead_source": TEXT,
        "is_converted": BOOLEAN,
        "converted_date": DATE,
        "created_at": DATETIME,
        "source_updated_at": DATETIME,
        "currency": TEXT,
    },
    natural_key=("source", "contact_id"),
    required_fields=("contact_id",),
    table_aliases=("contacts",),
)

CRM_DEALS = DataType(
    name="crm_deals",
    description="CRM deals and opportunities (HubSpot deals, Salesforce opportunities).",
    columns={
        "source": TEXT,
        "deal_id": TEXT,
        "deal_name": TEXT,
        "stage": TEXT,
        "pipeline": TEXT,
        "amount": DECIMAL,
        "currency": TEXT,
        "probability": DECIMAL,
        "close_date": DATE,
        "created_at": DATETIME,
        "is_closed": BOOLEAN,
        "is_won": BOOLEAN,
        "lead_source": TEXT,
        "campaign_id": TEXT,
    },
    natural_key=("source", "deal_id"),
    required_fields=("deal_id",),
    non_negative_fields=("amount",),
    date_column="close_date",
    money_fields=("amount",),
    metric_columns={
        "won": BOOLEAN, "days_to_close": INTEGER,
        "original_currency": TEXT, "original_amount": DECIMAL,
    },
    table_aliases=("deals",),
)

WEB_ANALYTICS = DataType(
    name="web_analytics",
    description="Web analytics sessions and conversions per day and traffic source (GA4).",
    columns={
        "source": TEXT,
        "property_id": TEXT,
        "date": DATE,
        "session_source": TEXT,
        "session_medium": TEXT,
        "session_campaign": TEXT,
        "sessions": INTEGER,
        "users": INTEGER,
        "new_users": INTEGER,
        "page_views": INTEGER,
        "conversions": DECIMAL,
        "revenue": DECIMAL,
        "currency": TEXT,
    },
    natural_key=(
        "source", "property_id", "date", "session_source", "session_medium", "session_campaign",
    ),
    required_fields=("date",),
    non_negative_fields=("sessions", "users", "new_users", "page_views", "conversions", "revenue"),
    metrics=(
        Ratio("conversion_rate", "conversions", "sessions"),
        Ratio("revenue_per_session", "revenue", "sessions"),
    ),
    date_column="date",
    money_fields=("revenue",),
    table_aliases=("analytics",),
    metric_columns={"original_currency": TEXT, "original_revenue": DECIMAL},
)

FX_RATES = DataType(
    name="fx_rates",
    description="Currency rates: one unit of from_currency is worth `rate` of to_currency.",
    columns={
        "source": TEXT,
        "date": DATE,
        "from_currency": TEXT,
        "to_currency": TEXT,
        "rate": DECIMAL,
    },
    natural_key=("source", "date", "from_currency", "to_currency"),
    required_fields=("date", "from_currency", "to_currency", "rate"),
    non_negative_fields=("rate",),
    date_column="date",
)

DATA_TYPES: dict[str, DataType] = {
    dt.name: dt
    for dt in (
        CAMPAIGN_PERFORMANCE, AD_PERFORMANCE, AUDIENCE,
        CRM_CONTACTS, CRM_DEALS, WEB_ANALYTICS, FX_RATES,
    )
}


class UnknownDataType(LookupError):
    def __init__(self, name: object) -> None:
        super().__init__(f"unknown data type {name!r}; known: {', '.join(sorted(DATA_TYPES))}")
        self.name = name


def get_data_type(name: str) -> DataType:
    try:
        return DATA_TYPES[name]
    except (KeyError, TypeError):
        raise UnknownDataType(name) from None
