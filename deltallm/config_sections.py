"""Schemas of the config's optional sections: file storage, the response cache, MCP servers."""
import re
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from deltallm import config_keys
from deltallm.errors import ConfigError


class FilesStorageSchema(Schema):
    """general_settings.files_storage: where file content lives (the database, or an S3 bucket)."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(["database", "s3"]))
    bucket = fields.String(validate=validate.Length(min=1))
    prefix = fields.String()
    endpoint_url = fields.String(allow_none=True)
    region_name = fields.String(allow_none=True)
    aws_access_key_id = fields.String(allow_none=True)
    aws_secret_access_key = fields.String(allow_none=True)

    @validates_schema
    def fits_type(self, data, **kwargs):
        if data.get("type") == "s3" and not data.get("bucket"):
            raise ValidationError("Missing data for required field (the s3 storage needs it).", "bucket")
        if data.get("type") == "database" and len(data) > 1:
            raise ValidationError("only the s3 storage takes this key", sorted(set(data) - {"type"})[0])


class CacheSchema(Schema):
    """general_settings.cache: the response cache (SPEC §10); absent means off."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(["local", "redis"]))
    ttl = fields.Float(load_default=600, validate=validate.Range(min=0, min_inclusive=False))
    namespace = fields.String(load_default="key", validate=validate.OneOf(["key", "shared"]))
    cache_sampled = fields.Boolean(load_default=False)
    # local: the LRU's bound on the cached answers' bytes, per worker
    max_size_mb = fields.Float(load_default=64, validate=validate.Range(min=0, min_inclusive=False))
    # redis: the longest a lookup may wait before it counts as a miss
    timeout = fields.Float(load_default=0.05, validate=validate.Range(min=0, min_inclusive=False, max=5))



MCP_SERVER_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
MCP_AUTH_TYPES = ("none", "bearer", "headers")


def mcp_server_entry(key, entry, where):
    """One MCP server (config `mcp_servers.KEY` or a POST /admin/mcp/servers body minus its key) ->
    ({url, auth: {type, token, headers}, description}, [(path, why ignored)]); a ConfigError names what
    is wrong."""
    if not isinstance(key, str) or not MCP_SERVER_KEY.fullmatch(key):
        raise ConfigError(f"{where}: a server key is 1 to 64 letters, digits, '_' or '-' (tools are "
                          "named KEY.TOOL)")
    ignored = config_keys.check(config_keys.mapping(entry, where), where, "mcp_server", config_keys.MCP_SERVER)
    url = entry.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL")
    auth = config_keys.mapping(entry.get("auth") or {"type": "none"}, f"{where}.auth")
    ignored += config_keys.check(auth, f"{where}.auth", "mcp_auth", config_keys.MCP_AUTH)
    kind = auth.get("type", "bearer" if auth.get("token") else "headers" if auth.get("headers") else "none")
    if kind not in MCP_AUTH_TYPES:
        raise ConfigError(f"{where}.auth.type: must be one of {', '.join(MCP_AUTH_TYPES)}")
    token, headers = auth.get("token"), auth.get("headers")
    if kind == "bearer" and (not isinstance(token, str) or not token):
        raise ConfigError(f"{where}.auth.token: a bearer server needs a token")
    if kind == "headers" and (not isinstance(headers, dict) or not headers or
                              not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise ConfigError(f"{where}.auth.headers: must be a mapping of header names to strings")
    extra = {"bearer": "headers", "headers": "token", "none": "token" if token else "headers"}[kind]
    if auth.get(extra) or (kind == "none" and headers):
        raise ConfigError(f"{where}.auth.{extra}: not used by auth type '{kind}'")
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(f"{where}.description: must be a string")
    return {"url": url, "auth": {"type": kind, "token": token if kind == "bearer" else None,
                                 "headers": dict(headers) if kind == "headers" else None},
            "description": description}, ignored
