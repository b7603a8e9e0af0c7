"""Strict marshmallow fields (JSON types as OpenAI checks them) and the load-or-400 helper."""
from marshmallow import INCLUDE, Schema, ValidationError, fields, missing

from deltallm.config import first_error
from deltallm.errors import InvalidRequest

# Every integer field fits a signed 64-bit column and orjson (which refuses wider integers); JSON
# numbers like 1e300 are integers to Python and would otherwise reach both.
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
# Token counts: far beyond any model's window (OpenAI refuses such values too), and small enough that
# sums of them (token limits reserve max_tokens) never overflow a 64-bit counter.
MAX_TOKENS = 2 ** 31 - 1
# orjson cannot serialise deeper than 254 levels and Responses echo the request a few levels down;
# no OpenAI request needs more than a few dozen (structured-output schemas stop at 10).
MAX_DEPTH = 128


class StrictBool(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be a boolean")
        return value


class StrictNumber(fields.Field):
    """int or float, never a numeric string or a boolean; optional inclusive bounds."""

    def __init__(self, *, minimum=None, maximum=None, integer=False, **kwargs):
        super().__init__(**kwargs)
        if integer:
            minimum = INT64_MIN if minimum is None else max(minimum, INT64_MIN)
            maximum = INT64_MAX if maximum is None else min(maximum, INT64_MAX)
        self.minimum, self.maximum, self.integer = minimum, maximum, integer

    def _deserialize(self, value, attr, data, **kwargs):
        kinds = (int,) if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            if self.integer and isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValidationError("must be an integer" if self.integer else "must be a number")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"must be <= {self.maximum}")
        return value


class StrictString(fields.Field):
    """A string; optionally non-empty, at most `max_length` characters, free of NUL characters."""

    def __init__(self, *, non_empty=False, max_length=None, no_nul=False, **kwargs):
        super().__init__(**kwargs)
        self.non_empty, self.max_length, self.no_nul = non_empty, max_length, no_nul

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("must be a string")
        if self.non_empty and not value:
            raise ValidationError("must not be empty")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters")
        if self.no_nul and "\x00" in value:
            raise ValidationError("must not contain NUL characters")
        return value


class FlatSchema(Schema):
    """A schema of plain fields (no hooks, no nesting) that passes unknown fields through, loaded
    field by field over what the body holds.

    marshmallow's own load visits every declared field, present or not (a chat request declares 21
    and usually sends 3 or 4); on the request path that was most of validation's cost. Each present
    field is still checked by its marshmallow field (`Field.deserialize`: null handling, type,
    validators), a required field that is absent is reported as marshmallow reports it, and errors
    have marshmallow's shape. A subclass that declares hooks (`@validates`, `@pre_load` ...) or a
    field with a `load_default` is loaded by marshmallow itself, so neither is ever skipped.
    """

    class Meta:
        unknown = INCLUDE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # hooks, or defaults for absent fields, need marshmallow's own load (it visits every field)
        self.flat = not any(self._hooks.values()) and all(
            field.load_default is missing for field in self.load_fields.values())
        self.required = [name for name, field in self.load_fields.items() if field.required]

    def load(self, data, *, many=None, partial=None, unknown=None):
        if not self.flat or many or partial or unknown is not None or type(data) is not dict:
            return super().load(data, many=many, partial=partial, unknown=unknown)
        declared, out, errors = self.load_fields, {}, {}
        for name, value in data.items():
            field = declared.get(name)
            if field is None:
                out[name] = value
                continue
            try:
                out[name] = field.deserialize(value, name, data)
            except ValidationError as exc:
                errors[name] = exc.messages
        for name in self.required:
            if name not in data:
                errors[name] = ["Missing data for required field."]
        if errors:
            raise ValidationError(errors, data=data, valid_data=out)
        return out


def load(schema, data):
    """schema.load(data), or a 400 invalid_request_error whose `param` is the failing field path."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if too_deep(data, MAX_DEPTH):
        name = next(k for k, v in data.items() if isinstance(v, (dict, list)) and too_deep(v, MAX_DEPTH - 1))
        raise InvalidRequest(f"Invalid value for '{name}': nested more than {MAX_DEPTH} levels deep.",
                             param=name)
    try:
        return schema.load(data)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        if message == "Missing data for required field.":
            raise InvalidRequest(f"Missing required parameter: '{path}'.", param=path) from None
        raise InvalidRequest(f"Invalid value for '{path}': {message}", param=path) from None


class Choice(StrictString):
    """A string from a fixed set."""

    def __init__(self, choices, **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value not in self.choices:
            raise ValidationError(f"must be one of {', '.join(self.choices)}")
        return value


class StrictDict(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must be an object")
        return value


class StrictList(fields.Field):
    """A JSON array, optionally non-empty, each item checked by `check(index, item)`."""

    def __init__(self, *, check=None, non_empty=False, **kwargs):
        super().__init__(**kwargs)
        self.check, self.non_empty = check, non_empty

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("must be an array")
        if self.non_empty and not value:
            raise ValidationError("must contain at least one item")
        if self.check:
            for i, item in enumerate(value):
                self.check(i, item)
        return value


def too_deep(value, limit):
    """True if `value` nests containers more than `limit` levels deep; level by level, so cheap for
    the usual flat bodies and blind to the size of strings (base64 images cost nothing)."""
    level = [value]
    for _ in range(limit):
        deeper = []
        for node in level:  # JSON from orjson: exactly dict and list, so identity checks suffice
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True
