"""Legacy completions request schema; unknown fields pass through to the chat request."""
from marshmallow import ValidationError, fields

from deltallm.schemas.chat import SamplingSchema
from deltallm.schemas.common import StrictBool, StrictNumber, StrictString


class PromptField(fields.Field):
    """A string or a non-empty array of strings; token arrays cannot be sent to a chat model."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(p, str) for p in value)):
            return value
        if value == []:
            raise ValidationError("must not be empty")
        raise ValidationError("must be a string or an array of strings (token arrays are not supported)")


class CompletionRequestSchema(SamplingSchema):
    prompt = PromptField(required=True)
    echo = StrictBool(allow_none=True)
    best_of = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)
    logprobs = StrictNumber(minimum=0, maximum=5, integer=True, allow_none=True)
    suffix = StrictString(allow_none=True)


completion_request = CompletionRequestSchema()
