"""POST /v1/batches: OpenAI's batch creation request (unknown fields are refused, not ignored)."""
from marshmallow import RAISE, Schema, ValidationError, validates

from deltallm.operations import OPERATIONS
from deltallm.schemas.common import StrictDict, StrictString

WINDOWS = ("24h",)


class BatchCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    input_file_id = StrictString(required=True, non_empty=True, max_length=64, no_nul=True)
    endpoint = StrictString(required=True, non_empty=True, max_length=64)
    completion_window = StrictString(allow_none=True, load_default="24h")
    metadata = StrictDict(allow_none=True, load_default=None)

    @validates("endpoint")
    def supported(self, value, **kwargs):
        if value not in OPERATIONS:
            raise ValidationError(f"must be one of {', '.join(OPERATIONS)}")

    @validates("completion_window")
    def window(self, value, **kwargs):
        if value is not None and value not in WINDOWS:
            raise ValidationError("must be '24h'")

    @validates("metadata")
    def metadata_shape(self, value, **kwargs):
        # OpenAI's metadata: up to 16 pairs, keys of at most 64 characters, string values of at most 512
        if value is None:
            return
        if len(value) > 16:
            raise ValidationError("must have at most 16 keys")
        for key, item in value.items():
            if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
                raise ValidationError("keys must be at most 64 characters, values strings of at most 512")


batch_create = BatchCreateSchema()
