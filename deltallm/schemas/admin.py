"""Admin API request schemas (virtual keys)."""
import re

from marshmallow import RAISE, Schema, ValidationError, fields

from deltallm.keys import parse_time
from deltallm.schemas.common import StrictDict, StrictNumber, StrictString

DURATION = re.compile(r"^\d+(s|m|h|d|mo)$")


def string_list(i, item):
    if not isinstance(item, str) or not item:
        raise ValidationError({f"[{i}]": ["must be a non-empty string"]})


class StringList(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be an array of strings")
        for i, item in enumerate(value):
            string_list(i, item)
        return list(dict.fromkeys(value))


class Timestamp(fields.Field):
    """ISO 8601 or unix seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_time(value)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ValidationError("must be an ISO 8601 timestamp or unix seconds") from None


class Duration(StrictString):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not DURATION.match(value):
            raise ValidationError("must look like 30s, 15m, 1h, 1d, 30d or 1mo")
        return value


class KeyUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = StrictString(allow_none=True)
    models = StringList()
    mcp_servers = StringList()
    metadata = StrictDict()
    max_budget = StrictNumber(minimum=0, allow_none=True)
    budget_duration = Duration(allow_none=True)
    rpm_limit = StrictNumber(minimum=0, integer=True, allow_none=True)
    tpm_limit = StrictNumber(minimum=0, integer=True, allow_none=True)
    max_parallel_requests = StrictNumber(minimum=1, integer=True, allow_none=True)
    expires_at = Timestamp(allow_none=True)


class KeyCreateSchema(KeyUpdateSchema):
    pass


key_create = KeyCreateSchema()
key_update = KeyUpdateSchema()
