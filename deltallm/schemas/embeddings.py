"""Embeddings, image generation and speech request schemas; unknown fields pass through."""
from marshmallow import ValidationError, fields

from deltallm.schemas.common import Choice, FlatSchema, StrictNumber, StrictString


MAX_INPUTS = 2048  # OpenAI's limit on the length of an `input` array


class EmbeddingInput(fields.Field):
    """A string, a list of strings, a token array, or a list of token arrays; never empty."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not value:
                raise ValidationError("must not be empty")
            return value
        if not isinstance(value, list) or not value:
            raise ValidationError("must be a string, an array of strings or an array of token arrays")
        if len(value) > MAX_INPUTS:
            raise ValidationError(f"must have at most {MAX_INPUTS} items")
        if all(isinstance(v, str) and v for v in value):
            return value
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return value
        if all(isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
               for v in value):
            return value
        raise ValidationError("must be a string, an array of non-empty strings or an array of token arrays")


class EmbeddingRequestSchema(FlatSchema):
    model = StrictString(required=True, non_empty=True)
    input = EmbeddingInput(required=True)
    encoding_format = Choice(["float", "base64"], allow_none=True)
    dimensions = StrictNumber(minimum=1, integer=True, allow_none=True)
    user = StrictString(allow_none=True)


class ImageRequestSchema(FlatSchema):
    model = StrictString(required=True, non_empty=True)
    prompt = StrictString(required=True, non_empty=True)
    n = StrictNumber(minimum=1, maximum=10, integer=True, allow_none=True)
    size = StrictString(allow_none=True)
    quality = StrictString(allow_none=True)
    style = StrictString(allow_none=True)
    response_format = Choice(["url", "b64_json"], allow_none=True)
    user = StrictString(allow_none=True)


SPEECH_FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                  "wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechRequestSchema(FlatSchema):
    model = StrictString(required=True, non_empty=True)
    input = StrictString(required=True, non_empty=True)
    voice = fields.Raw(required=True)
    response_format = Choice(list(SPEECH_FORMATS), allow_none=True)
    speed = StrictNumber(minimum=0.25, maximum=4.0, allow_none=True)
    instructions = StrictString(allow_none=True)


embedding_request = EmbeddingRequestSchema()
image_request = ImageRequestSchema()
speech_request = SpeechRequestSchema()
