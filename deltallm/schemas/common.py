"""Strict marshmallow fields (JSON types as OpenAI checks them) and the load-or-400 helper."""
from marshmallow import ValidationError, fields

from deltallm.config import first_error
from deltallm.errors import InvalidRequest


class StrictBool(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("must be a boolean")
        return value


class StrictNumber(fields.Field):
    """int or float, never a numeric string or a boolean; optional inclusive bounds."""

    def __init__(self, *, minimum=None, maximum=None, integer=False, **kwargs):
        super().__init__(**kwargs)
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
    def __init__(self, *, non_empty=False, **kwargs):
        super().__init__(**kwargs)
        self.non_empty = non_empty

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("must be a string")
        if self.non_empty and not value:
            raise ValidationError("must not be empty")
        return value


def load(schema, data):
    """schema.load(data), or a 400 invalid_request_error whose `param` is the failing field path."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
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
