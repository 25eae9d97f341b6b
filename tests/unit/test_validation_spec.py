"""validation_rules that cannot be compiled: RuleSpecError with where, what and how."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.datatypes import CAMPAIGN_PERFORMANCE, CRM_CONTACTS, DataType
from tasks.validation.catalogue import FORMS
from tasks.validation.core import RULE_NAMES, RuleSpecError, compile_rules, on_invalid_policy


def error(rules: Any, data_type: DataType = CAMPAIGN_PERFORMANCE) -> RuleSpecError:
    with pytest.raises(RuleSpecError) as caught:
        compile_rules(data_type, rules)
    return caught.value


def rule_error(rule: dict[str, Any], data_type: DataType = CAMPAIGN_PERFORMANCE
               ) -> RuleSpecError:
    return error({"rules": [rule]}, data_type)


def test_the_seed_form_compiles_and_none_means_the_defaults() -> None:
    seed = {"required_fields": ["campaign_id", "spend", "impressions", "clicks", "conversions"],
            "numeric_fields": ["spend", "impressions", "clicks", "conversions"]}
    compiled = compile_rules(CAMPAIGN_PERFORMANCE, seed)
    assert compiled.on_invalid == "quarantine"
    assert len(compile_rules(CAMPAIGN_PERFORMANCE, None).rules) == len(
        compile_rules(CAMPAIGN_PERFORMANCE, {}).rules)


def test_an_unknown_rule_lists_the_known_rules_and_their_forms() -> None:
    exc = error({"rules": [{"rule": "range", "field": "spend", "min": 0}, {"rule": "between"}]})
    assert str(exc) == ("validation_rules.rules[1]: unknown rule 'between'; known rules: "
                        + ", ".join(RULE_NAMES))
    assert exc.details["field"] == "validation_rules.rules[1].rule"
    assert exc.details["known_rules"] == list(RULE_NAMES)
    assert exc.details["forms"] == FORMS
    assert set(RULE_NAMES) == {
        "required", "not_null", "forbidden", "type", "range", "non_negative",
        "allowed_values", "regex", "length", "unique", "compare", "row_count", "freshness"}


@pytest.mark.parametrize(("rule", "message"), [
    ({"rule": "range", "field": "spend"},
     'validation_rules.rules[0] (range): give "min", "max" or both'),
    ({"rule": "range", "field": "spend", "min": "abc"},
     "validation_rules.rules[0].min (range): expected a number, got 'abc'"),
    ({"rule": "range", "field": "spend", "min": 5, "max": 1},
     "validation_rules.rules[0] (range): min is greater than max"),
    ({"rule": "range", "field": "campaign_name", "min": 1},
     "validation_rules.rules[0].field (range): campaign_name is a string field; this rule "
     "needs one of integer, number, date, datetime"),
    ({"rule": "range", "field": "spend", "min": 0, "inclusive": True},
     "validation_rules.rules[0] (range): unknown argument(s) 'inclusive'"),
    ({"rule": "required"},
     'validation_rules.rules[0] (required): give either "field" or "fields"'),
    ({"rule": "required", "fields": []},
     "validation_rules.rules[0].fields (required): must be a non-empty list of field names"),
    ({"rule": "required", "field": "spend", "mostly": 1.5},
     "validation_rules.rules[0].mostly (required): must be a number between 0 and 1"),
    ({"rule": "required", "field": "spend", "severity": "error"},
     "validation_rules.rules[0].severity (required): must be one of 'fail', 'warn'"),
    ({"rule": "type", "field": "spend", "type": "money"},
     "validation_rules.rules[0].type (type): must be one of 'integer', 'number', 'string', "
     "'boolean', 'date', 'datetime'"),
    ({"rule": "type", "field": "spend", "type": "number", "severity": "warn"},
     "validation_rules.rules[0].severity (type): spend is a number column: a value that is "
     "not one cannot be stored, so this rule cannot be a warning"),
    ({"rule": "regex", "field": "campaign_id", "pattern": "("},
     "validation_rules.rules[0].pattern (regex): is not a valid regular expression: "
     "missing ), unterminated subpattern at position 0"),
    ({"rule": "allowed_values", "field": "currency", "values": []},
     "validation_rules.rules[0].values (allowed_values): must be a non-empty list of values"),
    ({"rule": "length", "field": "campaign_id", "max": -1},
     "validation_rules.rules[0].max (length): must be an integer >= 0"),
    ({"rule": "compare", "left": "clicks", "op": "<=", "right": "campaign_name"},
     "validation_rules.rules[0] (compare): cannot compare clicks (integer) with "
     "campaign_name (string)"),
    ({"rule": "compare", "left": "a", "op": "<", "right": "b"},
     'validation_rules.rules[0] (compare): a and b are not declared: give "type" to read '
     "them as"),
    ({"rule": "compare", "left": "clicks", "op": "=<", "right": "impressions"},
     "validation_rules.rules[0].op (compare): must be one of '<', '<=', '>', '>=', '==', '!='"),
    ({"rule": "row_count", "min": 1, "mostly": 0.5},
     "validation_rules.rules[0].mostly (row_count): does not apply to a batch-level rule"),
    ({"rule": "freshness", "allow_future": True},
     'validation_rules.rules[0] (freshness): nothing to check: give "max_age_days" or leave '
     'out "allow_future"'),
])
def test_malformed_arguments_name_the_argument_and_show_the_form(
        rule: dict[str, Any], message: str) -> None:
    exc = rule_error(rule)
    assert str(exc) == message
    assert exc.details["rule"] == rule["rule"]
    assert exc.details["expected"].startswith(FORMS[rule["rule"]])
    assert exc.details["known_rules"] == list(RULE_NAMES)


def test_freshness_needs_a_field_when_the_data_type_has_no_date_column() -> None:
    exc = rule_error({"rule": "freshness", "max_age_days": 7}, CRM_CONTACTS)
    assert str(exc) == ("validation_rules.rules[0].field (freshness): crm_contacts has no "
                        "date column: give the field")


@pytest.mark.parametrize(("rules", "message", "field"), [
    ("all", "validation_rules must be an object", "validation_rules"),
    ({"required_field": ["x"]},
     "validation_rules: unknown key(s) 'required_field'; known: required_fields, "
     "numeric_fields, forbidden_fields, on_invalid, rules",
     "validation_rules.required_field"),
    ({"required_fields": "spend"}, "validation_rules.required_fields must be a list of field "
     "names", "validation_rules.required_fields"),
    ({"rules": {"rule": "unique"}}, "validation_rules.rules must be a list of rule objects",
     "validation_rules.rules"),
    ({"rules": ["unique"]}, 'validation_rules.rules[0] must be an object like {"rule": '
     '"range", "field": "spend", "min": 0}', "validation_rules.rules[0]"),
    ({"on_invalid": "drop"}, "validation_rules.on_invalid must be one of quarantine, "
     "reject_batch, not 'drop'", "validation_rules.on_invalid"),
])
def test_malformed_top_level(rules: Any, message: str, field: str) -> None:
    exc = error(rules)
    assert str(exc) == message
    assert exc.details["field"] == field
    assert exc.details["known_rules"] == list(RULE_NAMES)
    assert "expected" in exc.details


def test_on_invalid_policy() -> None:
    assert on_invalid_policy(None) == "quarantine"
    assert on_invalid_policy({"on_invalid": "reject_batch"}) == "reject_batch"
    with pytest.raises(RuleSpecError) as caught:
        on_invalid_policy({"on_invalid": "ignore"})
    assert caught.value.details["allowed"] == ["quarantine", "reject_batch"]
