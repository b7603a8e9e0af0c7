"""Load and validate the YAML configuration; the only module that reads os.environ."""
import datetime
import importlib.util
import os
from urllib.parse import urlsplit

import yaml
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from deltallm import config_keys
from deltallm.config_sections import CacheSchema, FilesStorageSchema, mcp_server_entry
from deltallm.errors import ConfigError
from deltallm.urls import (DEFAULT_SQLITE, database_kind, describe_database, describe_url,  # noqa: F401
                           sqlite_path)

DEFAULT_PATH = "config.yaml"
ENV_PREFIX = "os.environ/"
TOP_LEVEL = {"model_list", "router_settings", "deltallm_settings", "litellm_settings",
             "general_settings", "mcp_servers", "environment_variables"}
STRATEGIES = ["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing"]
MODES = ["chat", "completion", "embedding", "image_generation", "audio_speech",
         "audio_transcription", "rerank", "responses"]


class ParamsSchema(Schema):
    """`deltallm_params` of one deployment; provider-specific keys pass through."""

    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    api_base = fields.String(allow_none=True)
    api_key = fields.String(allow_none=True)
    api_version = fields.String(allow_none=True)
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False), allow_none=True)
    stream_timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False), allow_none=True)
    rpm = fields.Integer(validate=validate.Range(min=0), allow_none=True)
    tpm = fields.Integer(validate=validate.Range(min=0), allow_none=True)
    weight = fields.Float(validate=validate.Range(min=0, min_inclusive=False), allow_none=True)
    max_tokens = fields.Integer(validate=validate.Range(min=1), allow_none=True)
    extra_headers = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
    # TLS and proxy for this deployment: true/false, or the path of a CA bundle; an http(s) proxy URL
    ssl_verify = fields.Raw(allow_none=True)
    proxy = fields.String(allow_none=True)

    @validates_schema
    def ssl_verify_type(self, data, **kwargs):
        value = data.get("ssl_verify")
        if value is not None and not isinstance(value, (bool, str)):
            raise ValidationError("must be true, false or the path of a CA bundle", "ssl_verify")


class ModelEntrySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    model_name = fields.String(required=True, validate=validate.Length(min=1))
    deltallm_params = fields.Nested(ParamsSchema)
    litellm_params = fields.Nested(ParamsSchema)
    model_info = fields.Dict(load_default=dict)

    @validates_schema
    def one_params_block(self, data, **kwargs):
        if "deltallm_params" not in data and "litellm_params" not in data:
            raise ValidationError("Missing data for required field.", "deltallm_params")


def FallbackList(**kwargs):  # noqa: N802 - a field factory
    """`[{group: [fallback group, ...]}, ...]`, LiteLLM's shape."""
    return fields.List(fields.Dict(keys=fields.String(), values=fields.List(fields.String())), **kwargs)


class FallbackSettingsSchema(Schema):
    """The part of deltallm_settings (LiteLLM's litellm_settings) that DeltaLLM reads."""

    class Meta:
        unknown = INCLUDE

    fallbacks = FallbackList()
    context_window_fallbacks = FallbackList()
    content_policy_fallbacks = FallbackList()


class RouterSettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    routing_strategy = fields.String(load_default="simple-shuffle", validate=validate.OneOf(STRATEGIES))
    num_retries = fields.Integer(load_default=2, validate=validate.Range(min=0, max=20))
    timeout = fields.Float(load_default=600, validate=validate.Range(min=0, min_inclusive=False))
    allowed_fails = fields.Integer(load_default=3, validate=validate.Range(min=0))
    cooldown_time = fields.Float(load_default=60, validate=validate.Range(min=0))
    retry_after = fields.Float(load_default=0, validate=validate.Range(min=0))
    health_check_interval = fields.Float(allow_none=True, validate=validate.Range(min=1))
    fallbacks = FallbackList(load_default=list)
    context_window_fallbacks = FallbackList(load_default=list)
    content_policy_fallbacks = FallbackList(load_default=list)
    model_group_alias = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    model_group_strategy = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.OneOf(STRATEGIES)),
                                       load_default=dict)


class GeneralSettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    master_key = fields.String(allow_none=True)
    database_url = fields.String(allow_none=True)
    redis_url = fields.String(allow_none=True)
    max_request_body_mb = fields.Float(load_default=32, validate=validate.Range(min=0, min_inclusive=False))
    max_file_size_mb = fields.Float(load_default=200, validate=validate.Range(min=0, min_inclusive=False))
    max_transcription_mb = fields.Float(load_default=25, validate=validate.Range(min=0, min_inclusive=False))
    embeddings_batch_enabled = fields.Boolean(load_default=False)
    # batches: lines of one batch sent at once, and how long a batch job's lease lasts without a heartbeat
    # (a killed worker's batch is picked up again that long after its last heartbeat)
    batch_concurrency = fields.Integer(load_default=16, validate=validate.Range(min=1, max=1024))
    batch_lease_seconds = fields.Float(load_default=30, validate=validate.Range(min=1, max=3600))
    files_storage = fields.Nested(FilesStorageSchema, load_default=lambda: {"type": "database"}, allow_none=True)
    cache = fields.Nested(CacheSchema, load_default=None, allow_none=True)
    encryption_key = fields.String(allow_none=True)
    # hostile-input bounds (issue 6)
    max_stream_event_mb = fields.Float(load_default=8, validate=validate.Range(min=0, min_inclusive=False))
    max_prompts = fields.Integer(load_default=128, validate=validate.Range(min=1))
    max_rerank_documents = fields.Integer(load_default=1000, validate=validate.Range(min=1))
    request_body_timeout = fields.Float(load_default=60, validate=validate.Range(min=0, min_inclusive=False))
    # governance: with Redis down, serve with per-worker limits (true) or refuse with 503 (false)
    rate_limit_fail_open = fields.Boolean(load_default=True)
    usage_queue_size = fields.Integer(load_default=10_000, validate=validate.Range(min=100))
    # MCP (SPEC §6): the tool loop's bounds, the cap on one tool result given to a model, the deadline of
    # one call to an upstream MCP server, and how long a server's tool list is cached
    mcp_max_turns = fields.Integer(load_default=8, validate=validate.Range(min=1, max=100))
    mcp_max_tool_calls = fields.Integer(load_default=16, validate=validate.Range(min=1, max=1000))
    mcp_max_tool_output_kb = fields.Float(load_default=100, validate=validate.Range(min=1))
    mcp_timeout = fields.Float(load_default=60, validate=validate.Range(min=0, min_inclusive=False))
    mcp_tools_cache_seconds = fields.Float(load_default=300, validate=validate.Range(min=0))


class Settings:
    """The validated configuration, with environment overrides applied.

    `warnings` lists, one line each, every setting that is accepted but has no effect (see
    config_keys); it is derived from the config alone, so the banner and check-config agree.
    """

    def __init__(self, raw, path=None, searched=None):
        self.path = path
        self.searched = searched  # the default path looked for, when no config file was found
        self.raw = raw
        self.ignored = config_keys.check(raw, "", "top_level", TOP_LEVEL)  # [(dotted path, reason)]
        self.model_list = [self._model_entry(entry, f"model_list[{i}]")
                           for i, entry in enumerate(_list(raw.get("model_list"), "model_list"))]
        self.router_settings = self._section(RouterSettingsSchema(), raw.get("router_settings"), "router_settings")
        strategy = self.router_settings["routing_strategy"]
        if strategy in config_keys.PENDING_STRATEGIES:
            self.ignored.append(("router_settings.routing_strategy",
                                 f"{strategy} is not implemented yet: simple-shuffle is used"))
        if raw.get("deltallm_settings") and raw.get("litellm_settings"):
            raise ConfigError("litellm_settings: give deltallm_settings or its alias litellm_settings, not both")
        name = "litellm_settings" if raw.get("litellm_settings") else "deltallm_settings"
        self.deltallm_settings = self._section(FallbackSettingsSchema(), raw.get(name), name, "deltallm_settings")
        self.ignored += unknown_groups(self, name)
        general = self._section(GeneralSettingsSchema(), raw.get("general_settings"), "general_settings")
        self.env_overrides = {}
        for key, var in (("master_key", "DELTALLM_MASTER_KEY"), ("database_url", "DATABASE_URL"),
                         ("redis_url", "REDIS_URL"), ("encryption_key", "DELTALLM_ENCRYPTION_KEY")):
            if os.environ.get(var):
                general[key] = os.environ[var]
                self.env_overrides[key] = var
        self.general = general
        if (general.get("cache") or {}).get("type") == "redis" and not general.get("redis_url"):
            raise ConfigError("general_settings.cache.type: redis needs general_settings.redis_url (or REDIS_URL)")
        self.mcp_servers = {}
        for key, entry in config_keys.check_mcp_servers(raw.get("mcp_servers") or {}).items():
            self.mcp_servers[str(key)], ignored = mcp_server_entry(key, entry, f"mcp_servers.{key}")
            self.ignored += ignored
        self.ignored += config_keys.check_sections(raw)
        self.environment_variables = {str(k): str(v) for k, v in (raw.get("environment_variables") or {}).items()}

    master_key = property(lambda self: self.general.get("master_key"))
    database_url = property(lambda self: self.general.get("database_url"))
    redis_url = property(lambda self: self.general.get("redis_url"))
    encryption_key = property(lambda self: self.general.get("encryption_key"))


    @property
    def warnings(self):
        """One line per setting that has no effect, and per missing piece the server can run without."""
        lines = [f"{path}: {reason}" for path, reason in self.ignored]
        if self.searched:
            lines.insert(0, f"no config file found (looked for {self.searched}; use --config FILE or "
                            "DELTALLM_CONFIG_PATH): serving no models")
        if database_kind(self.database_url) == "postgres" and not installed("psycogreen"):
            lines.append(f"{self.source('database_url')}: psycogreen is not installed, so each PostgreSQL "
                         "query blocks its whole gevent worker: pip install 'deltallm[postgres]'")
        return lines

    def source(self, key):
        """Where a general setting came from, for messages: the variable that overrode it, or the key."""
        return self.env_overrides.get(key) or f"general_settings.{key}"

    def _section(self, schema, data, where, table=None):
        data = config_keys.mapping(data or {}, where)
        self.ignored += config_keys.check(data, where, table or where, schema.fields)
        return _load(schema, data, where)

    def _model_entry(self, entry, where):
        loaded, ignored = model_entry(entry, where)
        self.ignored += ignored
        return loaded


def model_entry(entry, where):
    """One `model_list` entry (the config's, or a POST /admin/models body) -> ({model_name, params,
    model_info}, [(path, why ignored)]); a ConfigError names what is wrong."""
    block, ignored = config_keys.check_model_entry(entry, where, ParamsSchema._declared_fields)
    loaded = _load(ModelEntrySchema(), entry, where)
    out = {"model_name": loaded["model_name"], "params": loaded[block], "model_info": loaded["model_info"]}
    check_model(out, where)
    return out, ignored


def unknown_groups(settings, settings_name):
    """Fallback chains, aliases and per-group strategies that name no model group: a typo would
    otherwise silently skip a fallback. Warnings, not errors: /admin/models may add the group later."""
    groups = {entry["model_name"] for entry in settings.model_list}
    routing = settings.router_settings
    groups |= set(routing["model_group_alias"])
    named = [(f"router_settings.model_group_alias.{alias}", target)
             for alias, target in routing["model_group_alias"].items()]
    named += [(f"router_settings.model_group_strategy.{group}", group) for group in routing["model_group_strategy"]]
    for section, data in (("router_settings", routing), (settings_name, settings.deltallm_settings)):
        for kind in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
            for i, item in enumerate(data.get(kind) or ()):
                named += [(f"{section}.{kind}[{i}].{group}", name) for group, chain in item.items()
                          for name in [group, *chain]]
    return [(path, f"no model group '{name}' in this config (it only works once /admin/models adds one)")
            for path, name in named if name not in groups]


def _list(data, where):
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{where}: expected a list, got {type(data).__name__}")
    return data


def _load(schema, data, where):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    try:
        return schema.load(data)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        raise ConfigError(f"{where}.{path}: {message}") from None


def first_error(messages, prefix=""):
    """Flatten marshmallow's nested error dict to (dotted path, first message)."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return first_error(value, prefix)
        key = f"[{key}]" if isinstance(key, int) else str(key)
        step = f".{key}" if prefix and not key.startswith("[") else key
        return first_error(value, prefix + step)
    if isinstance(messages, list):
        return first_error(messages[0], prefix) if messages and not isinstance(messages[0], str) \
            else (prefix, messages[0] if messages else "invalid")
    return prefix, str(messages)


def substitute_env(value, where, extra):
    """Replace every `os.environ/NAME` string with that variable, naming the key when it is unset.

    YAML dates become their ISO strings on the way."""
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{where}.{k}" if where else str(k), extra) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{where}[{i}]", extra) for i, v in enumerate(value)]
    if isinstance(value, datetime.date):  # YAML reads `api_version: 2024-10-21` as a date
        return value.isoformat()
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        found = os.environ.get(name, extra.get(name))
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found
    return value


def resolve_path(path=None):
    """`--config`, else DELTALLM_CONFIG_PATH, else ./config.yaml; (path, explicitly chosen)."""
    if path:
        return path, True
    if os.environ.get("DELTALLM_CONFIG_PATH"):
        return os.environ["DELTALLM_CONFIG_PATH"], True
    return DEFAULT_PATH, False


def load(source=None):
    """Settings from a Settings, a dict, or a YAML path (see resolve_path)."""
    if isinstance(source, Settings):
        return source
    if isinstance(source, dict):
        return from_dict(source)
    path, explicit = resolve_path(source)
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(f"config file not found: {path}")
        return from_dict({}, path=None, searched=os.path.abspath(path))
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return from_dict(raw, path=path)


def from_dict(raw, path=None, searched=None):
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping")
    extra = {str(k): str(v) for k, v in config_keys.mapping(raw.get("environment_variables") or {},
                                                            "environment_variables").items()}
    settings = Settings(substitute_env(raw, "", extra), path, searched)
    validate_database(settings)
    return settings


def check_model(entry, where):
    """Provider prefixes must be known; checked at load so a typo fails at start, not per request."""
    from deltallm.providers import known_prefixes
    from deltallm.providers.families import RERANK_APIS
    prefixes = known_prefixes()
    model = entry["params"]["model"]
    prefix = model.partition("/")[0] if "/" in model else "openai"
    if prefix not in prefixes:
        raise ConfigError(f"{where}.deltallm_params.model: unknown provider prefix "
                          f"'{prefix}/' in '{model}' (known: {', '.join(sorted(prefixes))})")
    missing = missing_param(prefix, entry["params"])
    if missing:
        raise ConfigError(f"{where}.deltallm_params.{missing}")
    rerank_api = entry["params"].get("rerank_api")
    if rerank_api is not None and rerank_api not in RERANK_APIS:
        raise ConfigError(f"{where}.deltallm_params.rerank_api: must be one of {', '.join(RERANK_APIS)}")
    mode = entry["model_info"].get("mode")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"{where}.model_info.mode: must be one of {', '.join(MODES)}")


def missing_param(prefix, params):
    """What a provider cannot work without, checked at start rather than on the first request."""
    if prefix == "azure" and not params.get("api_base"):
        return "api_base: azure deployments need their resource endpoint, e.g. https://NAME.openai.azure.com"
    if prefix == "bedrock" and not (params.get("aws_region_name") or params.get("aws_profile_name")
                                    or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        return "aws_region_name: bedrock deployments need a region (or AWS_REGION in the environment)"
    if prefix == "bedrock" and not installed("botocore"):
        return "model: bedrock deployments need botocore: pip install 'deltallm[bedrock]'"
    return None


def installed(module):
    """Whether an optional dependency can be imported, without importing it (the gunicorn master
    must not import a driver before the workers fork)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def validate_database(settings):
    kind = database_kind(settings.database_url)
    if kind is None:
        raise ConfigError(f"{settings.source('database_url')}: unsupported scheme "
                          f"'{urlsplit(settings.database_url).scheme}' (use sqlite:///PATH or postgresql://...)")
    if kind == "postgres" and not installed("psycopg2"):
        raise ConfigError(f"{settings.source('database_url')}: PostgreSQL needs the psycopg2 driver: "
                          "pip install 'deltallm[postgres]'")


def upstream_environment(environ=None):
    """The proxy and CA-bundle variables for upstream calls, read once at startup.

    Names as requests and curl read them: lower case wins over upper case; the CA bundle is
    REQUESTS_CA_BUNDLE, else CURL_CA_BUNDLE, else SSL_CERT_FILE.
    """
    env = os.environ if environ is None else environ

    def var(name):
        return env.get(name.lower()) or env.get(name.upper()) or None
    proxies = {scheme: var(f"{scheme}_proxy") for scheme in ("http", "https", "all") if var(f"{scheme}_proxy")}
    ca_bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None
    return {"proxies": proxies, "no_proxy": var("no_proxy") or "", "ca_bundle": ca_bundle}


def server_settings():
    """Process settings for gunicorn, from the PaaS-style environment."""
    cpu = os.cpu_count() or 1
    return {
        "port": _whole("PORT", 8000),
        "host": os.environ.get("DELTALLM_HOST") or "0.0.0.0",
        # gevent workers are CPU-bound multiplexers: one per core, not the sync-worker 2n+1
        "workers": _whole("WEB_CONCURRENCY", cpu),
        "worker_connections": _whole("DELTALLM_WORKER_CONNECTIONS", 2000),
        "log_level": os.environ.get("DELTALLM_LOG_LEVEL") or "info",
        "access_log": os.environ.get("DELTALLM_ACCESS_LOG") or None,
        # DeltaLLM's own per-request line: json | text | off (unset: json under gunicorn without a TTY)
        "log_format": (os.environ.get("DELTALLM_LOG_FORMAT") or "").strip().lower() or None,
    }


def _whole(var, default):
    value = os.environ.get(var)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{var}: must be a whole number, got {value!r}") from None
