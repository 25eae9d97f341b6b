"""Request envelopes (marshmallow): the shape of a request, never its records one by one.

Records are checked by the pipeline's validation stage, which is hundreds of times faster
than marshmallow per record and quarantines instead of refusing the whole request.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from tasks.storage.cursor import MAX_CURSOR_CHARS
from tasks.storage.retrieve import COUNT_MODES, DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET


class _Envelope(Schema):
    class Meta:
        unknown = RAISE

    source = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                           metadata={"example": "meta_ads"})
    data_type = fields.String(required=True, validate=validate.Length(min=1, max=64),
                              metadata={"example": "campaign_performance"})
    data = fields.Raw(required=True, metadata={
        "description": '{"records": [...]} or a platform\'s whole response'})

    @validates_schema
    def _data_shape(self, body: dict, **_: object) -> None:
        data = body.get("data")
        if not isinstance(data, dict | list):
            raise ValidationError("must be an object such as {\"records\": [...]}", "data")


class IngestRequest(_Envelope):
    validation_rules = fields.Dict(load_default=None)
    processing_options = fields.Dict(load_default=None)
    storage_options = fields.Dict(load_default=None)
    ingestion_options = fields.Dict(load_default=None)


class ValidateRequest(_Envelope):
    validation_rules = fields.Dict(load_default=None)


class ProcessRequest(_Envelope):
    processing_options = fields.Dict(load_default=None)


class StoreRequest(_Envelope):
    storage_options = fields.Dict(load_default=None)


class RetrieveRequest(Schema):
    """POST /retrieve. Names are checked against the data type's declaration by the query
    builder (tasks/storage/retrieve.py), which says which ones are allowed."""

    class Meta:
        unknown = RAISE

    data_type = fields.String(required=True, validate=validate.Length(min=1, max=64))
    filters = fields.Dict(keys=fields.String(), load_default=dict, metadata={
        "description": 'column: value | [values] | {"gte": 10, "lt": 100, "ne": ...}; '
                       'and "date_range": {"start", "end"}'})
    sort = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                       load_default=list, validate=validate.Length(max=16),
                       metadata={"example": ["-date", "campaign_id"]})
    fields_ = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                          data_key="fields", attribute="fields", load_default=None,
                          validate=validate.Length(max=256))
    limit = fields.Integer(load_default=None, strict=True,
                           validate=validate.Range(min=1, max=MAX_LIMIT), metadata={
                               "description": f"page size, default {DEFAULT_LIMIT}, at most "
                                              f"{MAX_LIMIT}; for text/csv, omit it to stream "
                                              "every matching row"})
    offset = fields.Integer(load_default=0, strict=True,
                            validate=validate.Range(min=0, max=MAX_OFFSET))
    cursor = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=MAX_CURSOR_CHARS),
                           metadata={"description": "next_cursor of the previous page"})
    group_by = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                           load_default=None, metadata={"example": ["campaign_id"]})
    metrics = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                          load_default=None,
                          metadata={"example": ["spend", "clicks", "impressions", "ctr"]})
    total_count = fields.String(load_default="exact", validate=validate.OneOf(COUNT_MODES))


class ReplayRequest(Schema):
    class Meta:
        unknown = RAISE

    records = fields.List(fields.Dict(), required=True)
