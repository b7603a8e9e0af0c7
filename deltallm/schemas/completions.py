"""Legacy completions request schema; unknown fields pass through to the chat request."""
from marshmallow import INCLUDE, Schema, ValidationError, fields

from deltallm.schemas.chat import StopField
from deltallm.schemas.common import StrictBool, StrictDict, StrictNumber, StrictString


class PromptField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, (str, list)):
            raise ValidationError("must be a string or an array of strings")
        return value


class CompletionRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model = StrictString(required=True, non_empty=True)
    prompt = PromptField(required=True)
    stream = StrictBool(allow_none=True)
    stream_options = StrictDict(allow_none=True)
    n = StrictNumber(minimum=1, maximum=128, integer=True, allow_none=True)
    max_tokens = StrictNumber(minimum=1, integer=True, allow_none=True)
    temperature = StrictNumber(minimum=0, maximum=2, allow_none=True)
    top_p = StrictNumber(minimum=0, maximum=1, allow_none=True)
    presence_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    frequency_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    seed = StrictNumber(integer=True, allow_none=True)
    stop = StopField(allow_none=True)
    user = StrictString(allow_none=True)
    echo = StrictBool(allow_none=True)
    best_of = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)
    logprobs = StrictNumber(minimum=0, maximum=5, integer=True, allow_none=True)
    suffix = StrictString(allow_none=True)


completion_request = CompletionRequestSchema()
