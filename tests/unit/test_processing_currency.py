"""Currency conversion in the process core, with a fake lookups object (no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_DEALS
from tasks.processing.core import process
from tasks.processing.currency import RateBook

D = Decimal
RECORD = {
    "source": "meta_ads", "account_id": "act_1", "campaign_id": "1", "date": "2025-01-15",
    "currency": "USD", "spend": "100.5", "impressions": 1000, "clicks": 50,
    "conversions": "5", "conversion_value": "201",
}


class FakeRates:
    """Lookups with fixed rates; records every call."""

    def __init__(self, rates: dict[tuple[str, str], list[tuple[date, Decimal]]]) -> None:
        self.rates = rates
        self.calls: list[tuple] = []

    def audience_for(self, campaign_keys):
        return {}

    def fx_rates(self, pairs, since, until):
        self.calls.append((set(pairs), since, until))
        return {pair: [(d, r) for d, r in rows if until is None or d <= until]
                for pair, rows in self.rates.items() if pair in pairs}


def field(record: dict, name: str):
    """A value kept in its column, or in `extra` while the table has no such column."""
    return record[name] if name in record else record.get("extra", {}).get(name)


USD_EUR = FakeRates({("USD", "EUR"): [(date(2025, 1, 10), D("0.92")),
                                      (date(2025, 1, 20), D("0.95"))]})


def run(records, lookups, **options):
    return process(records, CAMPAIGN_PERFORMANCE, {"target_currency": "EUR", **options}, lookups)


def test_money_is_converted_exactly_and_originals_are_kept():
    lookups = FakeRates(USD_EUR.rates)
    output = run([RECORD], lookups)
    record = output.records[0]
    assert record["spend"] == D("92.460") and record["conversion_value"] == D("184.92")
    assert record["currency"] == "EUR"
    assert field(record, "original_currency") == "USD"
    assert field(record, "original_spend") == D("100.5")
    assert field(record, "original_conversion_value") == D("201")
    assert output.result["converted"] == 1
    assert output.result["target_currency"] == "EUR"
    assert lookups.calls == [({("USD", "EUR"), ("EUR", "USD")}, date(2025, 1, 15),
                              date(2025, 1, 15))]


def test_metrics_are_computed_from_converted_money():
    record = run([RECORD], FakeRates(USD_EUR.rates)).records[0]
    assert record["cpc"] == D("1.8492")  # 92.460 / 50
    assert record["cpm"] == D("92.46")
    assert record["roas"] == D(2)


def test_the_latest_rate_on_or_before_the_date_applies():
    rows = [{**RECORD, "date": day, "campaign_id": day} for day in
            ("2025-01-10", "2025-01-19", "2025-01-20", "2025-02-01")]
    output = run(rows, FakeRates(USD_EUR.rates))
    assert [r["spend"] for r in output.records] == [
        D("92.460"), D("92.460"), D("95.475"), D("95.475")]


def test_a_record_without_a_date_takes_the_latest_rate():
    lookups = FakeRates(USD_EUR.rates)
    output = run([{**RECORD, "date": None}, {**RECORD, "campaign_id": "2"}], lookups)
    assert [r["spend"] for r in output.records] == [D("95.475"), D("92.460")]
    assert lookups.calls[0][1:] == (date(2025, 1, 15), None)  # one query, no upper bound


def test_only_undated_records_ask_for_the_latest_rates():
    lookups = FakeRates(USD_EUR.rates)
    run([{**RECORD, "date": None}], lookups)
    assert lookups.calls[0][1:] == (date.max, None)


def test_an_inverse_rate_is_used_when_no_direct_one_exists():
    lookups = FakeRates({("EUR", "USD"): [(date(2025, 1, 1), D("1.25"))]})
    record = run([RECORD], lookups).records[0]
    assert record["spend"] == D("80.400")  # 100.5 * (1 / 1.25)


def test_the_more_recent_of_direct_and_inverse_rates_wins():
    book = RateBook({("USD", "EUR"): [(date(2025, 1, 1), D("0.9"))],
                     ("EUR", "USD"): [(date(2025, 1, 5), D("1.25"))]})
    assert book.multiplier("USD", "EUR", date(2025, 1, 4)) == D("0.9")
    assert book.multiplier("USD", "EUR", date(2025, 1, 5)) == D("0.8")
    assert book.multiplier("USD", "EUR", date(2024, 12, 31)) is None
    book = RateBook({("EUR", "USD"): [(date(2025, 1, 1), D(3))]})
    assert book.multiplier("USD", "EUR", None) == D("0.33333333333333333333")


def test_a_missing_rate_quarantines_the_record_with_a_reason():
    rows = [RECORD, {**RECORD, "campaign_id": "2", "currency": "GBP"},
            {**RECORD, "campaign_id": "3", "date": "2025-01-01"}]
    output = run(rows, FakeRates(USD_EUR.rates))
    assert [r["campaign_id"] for r in output.records] == ["1"]
    assert [r.index for r in output.rejected] == [1, 2]
    assert output.rejected[0].record["currency"] == "GBP"  # the record, types normalised
    assert output.rejected[0].record["spend"] == D("100.5")
    assert output.rejected[0].reasons == [{
        "rule": "fx_rate_missing", "field": "currency", "value": "GBP",
        "message": "no GBP->EUR rate on or before 2025-01-15"}]
    assert output.rejected[1].reasons[0]["message"] == "no USD->EUR rate on or before 2025-01-01"
    assert output.result["fx_rate_missing"] == 2
    assert output.result["records_refused"] == 2
    assert output.result["records_count"] == 1


def test_a_missing_rate_with_keep_leaves_the_record_unconverted_and_flagged():
    output = run([{**RECORD, "currency": "GBP"}], FakeRates({}), on_missing_rate="keep")
    record = output.records[0]
    assert record["spend"] == D("100.5") and record["currency"] == "GBP"
    assert record["extra"]["fx_rate_missing"] == "EUR"
    assert field(record, "original_spend") is None
    assert output.result["fx_rate_missing"] == 1 and not output.rejected


def test_money_without_a_currency_is_flagged_not_guessed():
    output = run([{**RECORD, "currency": None}], FakeRates(USD_EUR.rates))
    assert output.records == []
    assert output.rejected[0].reasons[0]["rule"] == "currency_missing"
    assert output.result["currency_missing"] == 1


def test_records_already_in_the_target_currency_need_no_rate():
    lookups = FakeRates({})
    output = run([{**RECORD, "currency": "eur"}], lookups)
    record = output.records[0]
    assert record["currency"] == "EUR" and record["spend"] == D("100.5")
    assert field(record, "original_currency") == "eur"
    assert output.result["currency_unchanged"] == 1 and output.result["converted"] == 0
    assert lookups.calls == []


def test_records_without_money_are_left_alone():
    output = run([{"campaign_id": "1", "clicks": 3, "currency": "GBP"}], FakeRates({}))
    assert output.records[0]["currency"] == "GBP" and not output.rejected


def test_one_rates_query_per_batch():
    lookups = FakeRates(USD_EUR.rates)
    rows = [{**RECORD, "campaign_id": str(i), "currency": c}
            for i, c in enumerate(["USD", "GBP", "USD", "JPY"] * 50)]
    run(rows, lookups)
    assert len(lookups.calls) == 1
    assert lookups.calls[0][0] == {("USD", "EUR"), ("EUR", "USD"), ("GBP", "EUR"),
                                   ("EUR", "GBP"), ("JPY", "EUR"), ("EUR", "JPY")}


def test_without_lookups_nothing_is_converted_silently():
    output = process([RECORD], CAMPAIGN_PERFORMANCE, {"target_currency": "EUR"})
    assert output.records == [] and output.rejected[0].reasons[0]["rule"] == "fx_rate_missing"


def test_deal_amounts_convert_on_their_close_date():
    lookups = FakeRates({("GBP", "USD"): [(date(2025, 3, 1), D("1.25"))]})
    deal = {"deal_id": "1", "amount": "1000", "currency": "GBP", "close_date": "2025-03-31"}
    output = process([deal], CRM_DEALS, {"target_currency": "usd"}, lookups)
    record = output.records[0]
    assert record["amount"] == D("1250.00") and record["currency"] == "USD"
    assert field(record, "original_amount") == D("1000")


def test_conversion_keeps_batch_order_and_dedup():
    rows = [{**RECORD, "currency": "GBP"}, {**RECORD, "campaign_id": "2"},
            {**RECORD, "spend": "1"}]
    output = run(rows, FakeRates(USD_EUR.rates))
    assert [(r["campaign_id"], r["spend"]) for r in output.records] == [
        ("1", D("0.92")), ("2", D("92.460"))]
    assert output.result["duplicates_removed"] == 1 and not output.rejected
