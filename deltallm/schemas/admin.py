"""Admin API request schemas (virtual keys), bounded by what the database columns can hold."""
import re

import orjson
from marshmallow import RAISE, Schema, ValidationError, fields, validates_schema

from deltallm.errors import InvalidRequest
from deltallm.governance.durations import parse_duration
from deltallm.keys import parse_time
from deltallm.schemas.common import StrictDict, StrictNumber, StrictString

# ASCII digits only (\d also matches other scripts' digits); six digits keep it inside its column.
DURATION = re.compile(r"[0-9]{1,6}(s|m|h|d|mo)")
INT32_MAX = 2 ** 31 - 1  # limits are INTEGER columns (4 bytes on PostgreSQL)
MAX_BUDGET = 1_000_000_000  # USD; absurd values are typos, and null means no budget
MAX_NAME = 255  # a CharField's VARCHAR(255)
MAX_LIST = 1000  # model or MCP server names per key
MAX_METADATA = 16 * 1024  # bytes of metadata JSON per key: every authentication reads it
# a budget period or key lifetime beyond a century is a typo, and 999999mo would leave the calendar
# (datetime ends at year 9999: every budget check of such a key would fail)
MAX_DURATION = {"s": 999_999, "m": 999_999, "h": 876_600, "d": 36_525, "mo": 1200}


def string_list(i, item):
    if not isinstance(item, str) or not item:
        raise ValidationError({f"[{i}]": ["must be a non-empty string"]})
    if len(item) > MAX_NAME or "\x00" in item:
        raise ValidationError({f"[{i}]": [f"must be at most {MAX_NAME} characters, without NUL characters"]})


class StringList(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be an array of strings")
        if len(value) > MAX_LIST:
            raise ValidationError(f"must have at most {MAX_LIST} items")
        for i, item in enumerate(value):
            string_list(i, item)
        return list(dict.fromkeys(value))


class Metadata(StrictDict):
    """Any JSON object of at most MAX_METADATA bytes, without NUL characters (PostgreSQL refuses
    them in text, and the other string fields refuse them too)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(orjson.dumps(value)) > MAX_METADATA:
            raise ValidationError(f"must be at most {MAX_METADATA} bytes as JSON")
        stack = [("", value)]
        while stack:
            path, node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, item in items:
                where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                if any(isinstance(text, str) and "\x00" in text for text in (key, item)):
                    raise ValidationError({where.lstrip("."): ["must not contain NUL characters"]})
                if isinstance(item, (dict, list)):
                    stack.append((where, item))
        return value


class Timestamp(fields.Field):
    """ISO 8601 or unix seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_time(value)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ValidationError("must be an ISO 8601 timestamp or unix seconds") from None


class Duration(StrictString):
    """`<N>s|m|h|d|mo` as governance/durations.py reads it, N >= 1, at most a century."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not DURATION.fullmatch(value):
            raise ValidationError("must look like 30s, 15m, 1h, 1d, 30d or 1mo (at most 6 digits)")
        try:
            count, unit = parse_duration(value)
        except InvalidRequest:
            raise ValidationError("must be a positive duration such as 30s, 15m, 1h, 30d or 1mo") from None
        if count > MAX_DURATION[unit]:
            raise ValidationError(f"must be at most 100 years ({MAX_DURATION[unit]}{unit})")
        return value


class ModelLimits(StrictDict):
    """Per public model name, a non-negative integer limit: `{"gpt-4o": 100}`."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > MAX_LIST:
            raise ValidationError(f"must have at most {MAX_LIST} models")
        for name, limit in value.items():
            if not name or len(name) > MAX_NAME or "\x00" in name:
                raise ValidationError({name: [f"model names must be 1 to {MAX_NAME} characters, without NUL"]})
            if isinstance(limit, float) and limit.is_integer():
                value[name] = limit = int(limit)
            if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= INT32_MAX:
                raise ValidationError({name: [f"must be an integer between 0 and {INT32_MAX}"]})
        return value


class KeyUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = StrictString(allow_none=True, max_length=MAX_NAME, no_nul=True)
    models = StringList()
    mcp_servers = StringList()
    metadata = Metadata()
    max_budget = StrictNumber(minimum=0, maximum=MAX_BUDGET, allow_none=True)
    budget_duration = Duration(allow_none=True)
    rpm_limit = StrictNumber(minimum=0, maximum=INT32_MAX, integer=True, allow_none=True)
    tpm_limit = StrictNumber(minimum=0, maximum=INT32_MAX, integer=True, allow_none=True)
    max_parallel_requests = StrictNumber(minimum=1, maximum=INT32_MAX, integer=True, allow_none=True)
    model_rpm_limit = ModelLimits(allow_none=True)
    model_tpm_limit = ModelLimits(allow_none=True)
    expires_at = Timestamp(allow_none=True)
    # LiteLLM's: the key expires this long from now (instead of at `expires_at`)
    duration = Duration()

    @validates_schema
    def one_expiry(self, data, **kwargs):
        if "duration" in data and "expires_at" in data:
            raise ValidationError({"duration": ["give either duration or expires_at, not both"]})


class KeyCreateSchema(KeyUpdateSchema):
    pass


key_create = KeyCreateSchema()
key_update = KeyUpdateSchema()
