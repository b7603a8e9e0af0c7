"""Legacy completions request schema; unknown fields pass through to the chat request."""
from marshmallow import ValidationError, fields

from deltallm.schemas.chat import SamplingSchema
from deltallm.schemas.common import StrictBool, StrictNumber, StrictString


class PromptField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, (str, list)):
            raise ValidationError("must be a string or an array of strings")
        return value


class CompletionRequestSchema(SamplingSchema):
    prompt = PromptField(required=True)
    echo = StrictBool(allow_none=True)
    best_of = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)
    logprobs = StrictNumber(minimum=0, maximum=5, integer=True, allow_none=True)
    suffix = StrictString(allow_none=True)


completion_request = CompletionRequestSchema()
