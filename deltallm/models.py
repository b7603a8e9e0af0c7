"""Peewee models; tables are created and upgraded by `migrate()` (idempotent)."""
import datetime

import orjson
from peewee import (CharField, DateTimeField, DoubleField, IntegerField, Model, PostgresqlDatabase,
                    TextField)
from playhouse.migrate import SchemaMigrator, migrate as run_migrations

from deltallm.db import database


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


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

    class Meta:
        table_name = "deltallm_api_keys"


MODELS = [ApiKey]


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
