"""CRM and analytics adapters (HubSpot, Salesforce, GA4): fixtures -> exact canonical records."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tasks.ingestion.core import count_rows, ingest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def records(data: Any, source: str, data_type: str, options: Any = None) -> list[dict]:
    output = ingest(data, source, data_type, options)
    assert output.rejected == []
    return output.records


def refusals(data: Any, source: str, data_type: str) -> list[str]:
    output = ingest(data, source, data_type)
    assert output.records == []
    return [r.reasons[0]["message"] for r in output.rejected]


# --- HubSpot ----------------------------------------------------------------------------


def test_hubspot_deals_response() -> None:
    won, open_deal = records(load("hubspot_deals.json"), "hubspot", "crm_deals")
    assert won == {
        "source": "hubspot", "deal_id": "1001", "deal_name": "Acme - Annual",
        "stage": "closedwon", "pipeline": "default", "amount": Decimal("1500.00"),
        "currency": "EUR", "probability": Decimal(1), "close_date": date(2025, 2, 1),
        "created_at": datetime(2025, 1, 10, 9, 30, 0, 123000, tzinfo=UTC),
        "is_closed": True, "is_won": True, "lead_source": "PAID_SOCIAL",
        "extra": {"hs_lastmodifieddate": "2025-02-01T17:05:00Z", "hs_object_id": "1001",
                  "createdAt": "2025-01-10T09:30:00.123Z", "updatedAt": "2025-02-01T17:05:00Z",
                  "archived": False},
    }
    # No createdate property: the object's createdAt is the creation time.
    assert open_deal == {
        "source": "hubspot", "deal_id": "1002", "deal_name": "Globex - Pilot",
        "stage": "appointmentscheduled", "pipeline": "default", "amount": None,
        "probability": Decimal("0.2"), "close_date": None,
        "created_at": datetime(2025, 2, 3, 8, 0, tzinfo=UTC),
        "is_closed": False, "is_won": False,
        "extra": {"hs_object_id": "1002", "updatedAt": "2025-02-03T08:00:00Z",
                  "archived": False},
    }


def test_hubspot_contacts_response() -> None:
    full, sparse = records(load("hubspot_contacts.json"), "hubspot", "crm_contacts")
    assert full == {
        "source": "hubspot", "contact_id": "501", "email": "ana@example.com",
        "first_name": "Ana", "last_name": "Silva", "company": "Acme", "country": "PT",
        "lifecycle_stage": "marketingqualifiedlead", "lead_status": "OPEN",
        "lead_source": "ORGANIC_SEARCH",
        "created_at": datetime(2025, 1, 5, 12, 0, tzinfo=UTC),
        "source_updated_at": datetime(2025, 1, 20, 10, 15, tzinfo=UTC),
        "extra": {"hs_object_id": "501", "createdAt": "2025-01-05T12:00:00Z",
                  "updatedAt": "2025-01-20T10:15:00Z", "archived": False},
    }
    assert sparse == {
        "source": "hubspot", "contact_id": "502", "email": "bo@example.com",
        "lifecycle_stage": "subscriber",
        "created_at": datetime(2025, 1, 6, 7, 0, tzinfo=UTC),
        "source_updated_at": datetime(2025, 1, 7, 7, 0, tzinfo=UTC),
        "extra": {"hs_object_id": "502", "archived": False},
    }


def test_hubspot_flat_export_rows() -> None:
    row = {"id": "7", "dealname": "X", "amount": "99.5", "hs_is_closed_won": "false",
           "custom_score": "3"}
    [record] = records({"records": [row]}, "hubspot", "crm_deals", {"currency": "USD"})
    assert record == {"source": "hubspot", "deal_id": "7", "deal_name": "X",
                      "amount": Decimal("99.5"), "is_won": False, "currency": "USD",
                      "extra": {"custom_score": "3"}}


def test_hubspot_bad_boolean_is_kept_for_validation_to_report() -> None:
    row = {"id": "8", "properties": {"hs_is_closed_won": "maybe"}}
    [record] = records({"records": [row]}, "hubspot", "crm_deals")
    assert record["is_won"] == "maybe"  # coercion leaves it; validation quarantines it


# --- Salesforce -------------------------------------------------------------------------


def test_salesforce_opportunity_query_result() -> None:
    data = load("salesforce_opportunities.json")
    assert count_rows(data, "salesforce", "crm_deals") == 2
    won, open_deal = records(data, "salesforce", "crm_deals")
    assert won == {
        "source": "salesforce", "deal_id": "006Dn00000A1b2cIAB",
        "deal_name": "Acme - 500 licences", "stage": "Closed Won",
        "amount": Decimal("25000.5"), "currency": "USD", "probability": Decimal("1.00"),
        "close_date": date(2025, 3, 31),
        "created_at": datetime(2025, 1, 15, 10, 0, tzinfo=UTC),
        "is_closed": True, "is_won": True, "lead_source": "Web",
        "campaign_id": "701Dn000001XyZaIAK",
        "extra": {"ForecastCategoryName": "Closed"},
    }
    assert open_deal == {
        "source": "salesforce", "deal_id": "006Dn00000A1b2dIAB", "deal_name": "Globex - renewal",
        "stage": "Prospecting", "amount": None, "currency": "EUR",
        "probability": Decimal("0.10"), "close_date": date(2025, 6, 30),
        "created_at": datetime(2025, 2, 1, 8, 30, tzinfo=UTC),
        "is_closed": False, "is_won": False, "lead_source": None, "campaign_id": None,
        "extra": {"ForecastCategoryName": "Pipeline"},
    }
    assert "attributes" not in won["extra"]


def test_salesforce_lead_query_result() -> None:
    [lead] = records(load("salesforce_leads.json"), "salesforce", "crm_contacts")
    assert lead == {
        "source": "salesforce", "contact_id": "00QDn000003AbCdMAK", "first_name": "Jo",
        "last_name": "Park", "email": "jo.park@example.com", "company": "Initech",
        "country": "KR", "lead_status": "Closed - Converted", "lead_source": "Partner Referral",
        "is_converted": True, "converted_date": date(2025, 2, 10),
        "created_at": datetime(2025, 1, 20, 14, 45, tzinfo=UTC),
        "source_updated_at": datetime(2025, 2, 10, 9, 0, tzinfo=UTC),
        "currency": "USD", "extra": {"ConvertedOpportunityId": "006Dn00000A1b2cIAB"},
    }


def test_salesforce_contact_records_and_string_booleans() -> None:
    row = {"attributes": {"type": "Contact"}, "Id": "003A", "Email": "x@example.com",
           "MailingCountry": "FR", "IsConverted": "false"}
    [record] = records({"records": [row]}, "salesforce", "crm_contacts")
    assert record == {"source": "salesforce", "contact_id": "003A", "email": "x@example.com",
                      "country": "FR", "is_converted": False}


def test_salesforce_records_of_the_wrong_object_are_refused() -> None:
    leads = load("salesforce_leads.json")
    assert refusals(leads, "salesforce", "crm_deals") == [
        "salesforce: a Salesforce Lead record is not a crm_deals record (expected Opportunity)"]
    bad = {"records": [{"attributes": {"type": "Opportunity"}, "Id": "1", "Probability": "x"}]}
    assert refusals(bad, "salesforce", "crm_deals") == [
        "salesforce: Probability must be a percentage, got 'x'"]


# --- GA4 --------------------------------------------------------------------------------


def test_ga4_run_report_rows_are_zipped_with_headers() -> None:
    data = load("ga4_run_report.json")
    google, direct = records(data, "ga4", "web_analytics", {"property_id": "properties/123"})
    assert google == {
        "source": "ga4", "property_id": "properties/123", "date": date(2025, 1, 15),
        "session_source": "google", "session_medium": "cpc", "session_campaign": "spring_sale",
        "sessions": 15, "users": 12, "new_users": 9, "page_views": 48,
        "conversions": Decimal(2), "revenue": Decimal("120.50"), "currency": "USD",
        "extra": {"bounceRate": "0.4"},
    }
    assert direct == {
        "source": "ga4", "property_id": "properties/123", "date": date(2025, 1, 15),
        "session_source": "(direct)", "session_medium": "(none)",
        "session_campaign": "(not set)", "sessions": 7, "users": 7, "new_users": 5,
        "page_views": 10, "conversions": Decimal(0), "revenue": Decimal(0), "currency": "USD",
        "extra": {"bounceRate": "0.5714285714285714"},
    }


def test_ga4_batch_reports_and_keyed_records() -> None:
    report = {"dimensionHeaders": [{"name": "date"}], "metricHeaders": [{"name": "sessions"}],
              "rows": [{"dimensionValues": [{"value": "20250101"}],
                        "metricValues": [{"value": "3"}]}]}
    got = records({"reports": [report, report]}, "ga4", "web_analytics")
    assert got == [{"source": "ga4", "date": date(2025, 1, 1), "sessions": 3}] * 2
    keyed = {"date": "20250102", "sessionSource": "bing", "conversions": "1", "keyEvents": "4"}
    [record] = records({"records": [keyed]}, "ga4", "web_analytics")
    assert record == {"source": "ga4", "date": date(2025, 1, 2), "session_source": "bing",
                      "conversions": Decimal(1), "extra": {"keyEvents": "4"}}


def test_ga4_rows_that_do_not_match_the_headers_are_refused() -> None:
    report = {"dimensionHeaders": [{"name": "date"}, {"name": "sessionSource"}],
              "metricHeaders": [{"name": "sessions"}],
              "rows": [{"dimensionValues": [{"value": "20250101"}],
                        "metricValues": [{"value": "3"}]}]}
    assert count_rows(report, "ga4", "web_analytics") == 1
    [message] = refusals(report, "ga4", "web_analytics")
    assert message.startswith("ga4: a report row's values do not match the report's")
