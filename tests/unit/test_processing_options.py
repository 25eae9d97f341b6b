"""processing_options: checked early (the API answers 422), normalised for the core."""

from __future__ import annotations

import pytest

from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_CONTACTS, CRM_DEALS
from tasks.processing.core import process
from tasks.processing.options import (
    OPTION_NAMES,
    ProcessingOptionError,
    ProcessingOptions,
    check_processing_options,
)


def test_defaults():
    assert check_processing_options(CAMPAIGN_PERFORMANCE, None) == ProcessingOptions(
        calculate_metrics=True, enrich_with_audience_data=False, target_currency=None,
        on_missing_rate="quarantine")
    assert check_processing_options(CAMPAIGN_PERFORMANCE, {}) == ProcessingOptions()
    nulls = dict.fromkeys(OPTION_NAMES)
    assert check_processing_options(CAMPAIGN_PERFORMANCE, nulls) == ProcessingOptions()


def test_the_seed_options():
    options = check_processing_options(
        CAMPAIGN_PERFORMANCE, {"calculate_metrics": True, "enrich_with_audience_data": True})
    assert options.calculate_metrics and options.enrich_with_audience_data


def test_target_currency_is_normalised():
    options = check_processing_options(CRM_DEALS, {"target_currency": "eur",
                                                   "on_missing_rate": "keep"})
    assert options.target_currency == "EUR" and options.on_missing_rate == "keep"


@pytest.mark.parametrize(("options", "field"), [
    ({"calculate_metric": True}, "processing_options.calculate_metric"),
    ({"calculate_metrics": "yes"}, "processing_options.calculate_metrics"),
    ({"enrich_with_audience_data": 1}, "processing_options.enrich_with_audience_data"),
    ({"target_currency": "EURO"}, "processing_options.target_currency"),
    ({"target_currency": "E1R"}, "processing_options.target_currency"),
    ({"target_currency": "€€€"}, "processing_options.target_currency"),
    ({"target_currency": 978}, "processing_options.target_currency"),
    ({"on_missing_rate": "drop"}, "processing_options.on_missing_rate"),
    (["calculate_metrics"], "processing_options"),
])
def test_bad_options_raise_a_value_error_with_details(options, field):
    with pytest.raises(ProcessingOptionError) as caught:
        check_processing_options(CAMPAIGN_PERFORMANCE, options)
    assert isinstance(caught.value, ValueError)
    assert caught.value.details["field"] == field
    assert str(caught.value)


def test_unknown_options_list_the_allowed_ones():
    with pytest.raises(ProcessingOptionError) as caught:
        check_processing_options(CAMPAIGN_PERFORMANCE, {"zz": 1, "aa": 2})
    assert caught.value.details == {"field": "processing_options.aa",
                                    "allowed": list(OPTION_NAMES)}
    assert "aa, zz" in str(caught.value)


def test_a_data_type_without_money_cannot_be_converted():
    with pytest.raises(ProcessingOptionError) as caught:
        check_processing_options(CRM_CONTACTS, {"target_currency": "EUR"})
    assert caught.value.details["data_type"] == "crm_contacts"


def test_process_checks_its_options_too():
    with pytest.raises(ProcessingOptionError):
        process([{"campaign_id": "1"}], CAMPAIGN_PERFORMANCE, {"bogus": True})
