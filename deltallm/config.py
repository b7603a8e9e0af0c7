"""Load and validate the YAML configuration; the only module that reads os.environ."""
import datetime
import os

import yaml
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from deltallm.errors import ConfigError

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


class RouterSettingsSchema(Schema):
    class Meta:
        unknown = INCLUDE

    routing_strategy = fields.String(load_default="simple-shuffle", validate=validate.OneOf(STRATEGIES))
    num_retries = fields.Integer(load_default=2, validate=validate.Range(min=0, max=20))
    timeout = fields.Float(load_default=600, validate=validate.Range(min=0, min_inclusive=False))
    allowed_fails = fields.Integer(load_default=3, validate=validate.Range(min=0))
    cooldown_time = fields.Float(load_default=60, validate=validate.Range(min=0))


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
    # hostile-input bounds (issue 6)
    max_stream_event_mb = fields.Float(load_default=8, validate=validate.Range(min=0, min_inclusive=False))
    max_prompts = fields.Integer(load_default=128, validate=validate.Range(min=1))
    request_body_timeout = fields.Float(load_default=60, validate=validate.Range(min=0, min_inclusive=False))


class Settings:
    """The validated configuration, with environment overrides applied."""

    def __init__(self, raw, path=None):
        self.path = path
        self.raw = raw
        self.model_list = []
        for i, entry in enumerate(raw.get("model_list") or []):
            loaded = _load(ModelEntrySchema(), entry, f"model_list[{i}]")
            params = loaded.get("deltallm_params") or loaded.get("litellm_params")
            self.model_list.append({"model_name": loaded["model_name"], "params": params,
                                    "model_info": loaded["model_info"]})
        self.router_settings = _load(RouterSettingsSchema(), raw.get("router_settings") or {},
                                     "router_settings")
        self.deltallm_settings = dict(raw.get("deltallm_settings") or raw.get("litellm_settings") or {})
        general = _load(GeneralSettingsSchema(), raw.get("general_settings") or {}, "general_settings")
        for key, var in (("master_key", "DELTALLM_MASTER_KEY"), ("database_url", "DATABASE_URL"),
                         ("redis_url", "REDIS_URL")):
            if os.environ.get(var):
                general[key] = os.environ[var]
        self.general = general
        self.mcp_servers = dict(raw.get("mcp_servers") or {})

    master_key = property(lambda self: self.general.get("master_key"))
    database_url = property(lambda self: self.general.get("database_url"))
    redis_url = property(lambda self: self.general.get("redis_url"))


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
        return from_dict({}, path=None)
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


def from_dict(raw, path=None):
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping")
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key (expected one of: "
                          f"{', '.join(sorted(TOP_LEVEL))})")
    extra = {str(k): str(v) for k, v in (raw.get("environment_variables") or {}).items()}
    settings = Settings(substitute_env(raw, "", extra), path)
    validate_models(settings)
    return settings


def validate_models(settings):
    """Provider prefixes must be known; checked at load so a typo fails at start, not per request."""
    from deltallm.providers import known_prefixes
    prefixes = known_prefixes()
    for i, entry in enumerate(settings.model_list):
        model = entry["params"]["model"]
        prefix = model.partition("/")[0] if "/" in model else "openai"
        if prefix not in prefixes:
            raise ConfigError(f"model_list[{i}].deltallm_params.model: unknown provider prefix "
                              f"'{prefix}/' in '{model}' (known: {', '.join(sorted(prefixes))})")
        missing = missing_param(prefix, entry["params"])
        if missing:
            raise ConfigError(f"model_list[{i}].deltallm_params.{missing}")
        mode = entry["model_info"].get("mode")
        if mode is not None and mode not in MODES:
            raise ConfigError(f"model_list[{i}].model_info.mode: must be one of {', '.join(MODES)}")


def missing_param(prefix, params):
    """What a provider cannot work without, checked at start rather than on the first request."""
    if prefix == "azure" and not params.get("api_base"):
        return "api_base: azure deployments need their resource endpoint, e.g. https://NAME.openai.azure.com"
    if prefix == "bedrock" and not (params.get("aws_region_name") or params.get("aws_profile_name")
                                    or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        return "aws_region_name: bedrock deployments need a region (or AWS_REGION in the environment)"
    return None


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
        "port": int(os.environ.get("PORT") or 8000),
        "host": os.environ.get("DELTALLM_HOST") or "0.0.0.0",
        # gevent workers are CPU-bound multiplexers: one per core, not the sync-worker 2n+1
        "workers": int(os.environ.get("WEB_CONCURRENCY") or cpu),
        "worker_connections": int(os.environ.get("DELTALLM_WORKER_CONNECTIONS") or 2000),
        "log_level": os.environ.get("DELTALLM_LOG_LEVEL") or "info",
        "access_log": os.environ.get("DELTALLM_ACCESS_LOG") or None,
    }
