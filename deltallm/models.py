"""Peewee models; tables are created and upgraded by `migrate()` (idempotent)."""
import datetime

import orjson
from peewee import (BigAutoField, BigIntegerField, BlobField, BooleanField, CharField, DateTimeField,
                    DoubleField, IntegerField, Model, PostgresqlDatabase, TextField)
from playhouse.migrate import SchemaMigrator, migrate as run_migrations

from deltallm.db import database


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def epoch(moment):
    """A stored (naive UTC) time as OpenAI's unix seconds; None stays None."""
    return None if moment is None else int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())


class JSONField(TextField):
    """JSON stored as text, identical on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else orjson.dumps(value).decode()

    def python_value(self, value):
        return None if value is None else orjson.loads(value)


class BaseModel(Model):
    class Meta:
        database = database


class ApiKey(BaseModel):
    """A virtual key: only a salted hash of the secret is kept."""

    id = CharField(primary_key=True, max_length=32)
    name = CharField(null=True)
    key_hint = CharField(max_length=32)
    salt = CharField(max_length=64)
    key_hash = CharField(max_length=128)
    models = JSONField(default=list)
    mcp_servers = JSONField(default=list)
    metadata = JSONField(default=dict)
    # DOUBLE: Peewee's FloatField is PostgreSQL's 4-byte REAL (7 digits, refuses 1e-300 and 1e39)
    max_budget = DoubleField(null=True)
    budget_duration = CharField(null=True, max_length=16)
    budget_reset_at = DateTimeField(null=True)
    rpm_limit = IntegerField(null=True)
    tpm_limit = IntegerField(null=True)
    max_parallel_requests = IntegerField(null=True)
    spend = DoubleField(default=0.0)
    expires_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True, index=True)
    # per public model name: {"gpt-4o": 100}; checked in addition to the key-wide limits
    model_rpm_limit = JSONField(null=True)
    model_tpm_limit = JSONField(null=True)
    # anchor of the budget periods: set when the key is created or its budget_duration changes
    budget_period_start = DateTimeField(null=True)

    class Meta:
        table_name = "deltallm_api_keys"


class DeploymentRow(BaseModel):
    """A deployment added through /admin/models; its credentials are encrypted (see secrets.py)."""

    id = CharField(primary_key=True, max_length=64)
    model_name = CharField(max_length=255, index=True)
    params = JSONField()               # deltallm_params without credentials
    sealed = TextField(null=True)      # the credentials, encrypted
    model_info = JSONField(default=dict)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deltallm_deployments"


class McpServerRow(BaseModel):
    """An MCP server added through /admin/mcp/servers; its token and headers are encrypted."""

    server_key = CharField(primary_key=True, max_length=64)
    url = TextField()
    auth_type = CharField(max_length=16, default="none")
    sealed = TextField(null=True)      # {"token", "headers"}, encrypted
    description = TextField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deltallm_mcp_servers"


class Usage(BaseModel):
    """One row per request that reached an upstream (SPEC §8); written in batches, never updated."""

    id = BigAutoField()
    request_id = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow, index=True)
    key_id = CharField(null=True, max_length=32)
    model = CharField(max_length=255)
    deployment = CharField(null=True, max_length=64)
    endpoint = CharField(max_length=64)
    status = IntegerField()
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    total_tokens = IntegerField(default=0)
    spend = DoubleField(default=0.0)
    latency_ms = IntegerField(default=0)
    stream = BooleanField(default=False)
    batch_id = CharField(null=True, max_length=64)   # set when the request was one line of a batch
    cache_hit = BooleanField(null=True)              # true: answered from the response cache (SPEC §10)

    class Meta:
        table_name = "deltallm_usage"
        # spend per key since a period start, and /admin/spend or /admin/usage filtered by key or model
        indexes = ((("key_id", "created_at"), False), (("model", "created_at"), False),
                   (("request_id",), False))


class File(BaseModel):
    """An uploaded or generated file (OpenAI's `file` object); its content lives in a storage backend."""

    id = CharField(primary_key=True, max_length=64)
    owner = CharField(null=True, max_length=32)          # the ApiKey id; None: the master key
    purpose = CharField(null=True, max_length=32)        # None only while an upload has not named it yet
    filename = CharField(max_length=1024)
    bytes = BigIntegerField(default=0)
    # "uploaded" while the content streams in (hidden from the API), "processed" once it is complete
    status = CharField(max_length=16, default="uploaded")
    storage = CharField(max_length=16)                   # the backend holding the content: database | s3
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True, index=True)

    class Meta:
        table_name = "deltallm_files"
        # a key's files newest first (GET /v1/files), and the sweep of abandoned uploads
        indexes = ((("owner", "created_at"), False), (("status", "created_at"), False))


class FileChunk(BaseModel):
    """One bounded piece (1 MiB) of a file's content, for the database storage backend."""

    id = BigAutoField()
    file_id = CharField(max_length=64)
    seq = IntegerField()
    data = BlobField()

    class Meta:
        table_name = "deltallm_file_chunks"
        indexes = ((("file_id", "seq"), True),)


class Batch(BaseModel):
    """One batch (OpenAI's `batch` object, SPEC §5); its times are unix seconds, as the API shows them.

    `lease_until` is the lease of the job working on it (renewed by its heartbeat): a batch in an active
    state whose lease has run out has lost its job (a killed worker) and is picked up again."""

    id = CharField(primary_key=True, max_length=64)
    owner = CharField(null=True, max_length=32)          # the ApiKey id; None: the master key
    endpoint = CharField(max_length=64)
    input_file_id = CharField(max_length=64)
    completion_window = CharField(max_length=16, default="24h")
    status = CharField(max_length=16, default="validating")
    output_file_id = CharField(null=True, max_length=64)
    error_file_id = CharField(null=True, max_length=64)
    errors = JSONField(null=True)                        # [{code, message, param, line}] when failed
    metadata = JSONField(null=True)
    total = IntegerField(default=0)
    completed = IntegerField(default=0)
    failed = IntegerField(default=0)
    created_at = BigIntegerField()
    expires_at = BigIntegerField()
    in_progress_at = BigIntegerField(null=True)
    finalizing_at = BigIntegerField(null=True)
    completed_at = BigIntegerField(null=True)
    failed_at = BigIntegerField(null=True)
    expired_at = BigIntegerField(null=True)
    cancelling_at = BigIntegerField(null=True)
    cancelled_at = BigIntegerField(null=True)
    lease_until = DoubleField(null=True)
    job_id = CharField(null=True, max_length=128)        # the RQ job last enqueued for it

    class Meta:
        table_name = "deltallm_batches"
        # a key's batches newest first (GET /v1/batches), and the sweep for batches that lost their job
        indexes = ((("owner", "created_at"), False), (("status",), False))


class BatchItem(BaseModel):
    """One input line of a batch. `result` (the output or error file line) is written in the same
    statement that marks the item done or failed: that row is the exactly-once checkpoint."""

    id = BigAutoField()
    batch_id = CharField(max_length=64)
    line = IntegerField()
    custom_id = TextField()
    body = TextField()                                   # the line's request body, as JSON text
    state = CharField(max_length=8, default="pending")   # pending | done | failed
    result = JSONField(null=True)

    class Meta:
        table_name = "deltallm_batch_items"
        indexes = ((("batch_id", "line"), True), (("batch_id", "state"), False))




MODELS = [ApiKey, DeploymentRow, McpServerRow, Usage, File, FileChunk, Batch, BatchItem]


def migrate():
    """Create missing tables and add missing columns; safe to run any number of times."""
    with database.connection_context():
        database.create_tables(MODELS, safe=True)
        migrator = SchemaMigrator.from_database(database)
        for model in MODELS:
            table = model._meta.table_name
            existing = {c.name: c.data_type.lower() for c in database.get_columns(table)}
            missing = [f for f in model._meta.sorted_fields if f.column_name not in existing]
            if missing:
                run_migrations(*[migrator.add_column(table, f.column_name, f) for f in missing])
            # columns created as PostgreSQL's 4-byte REAL by earlier versions (SQLite's REAL has 8 bytes)
            narrow = [f for f in model._meta.sorted_fields if isinstance(database.obj, PostgresqlDatabase)
                      and isinstance(f, DoubleField) and existing.get(f.column_name) == "real"]
            if narrow:
                run_migrations(*[migrator.alter_column_type(table, f.column_name, f) for f in narrow])
