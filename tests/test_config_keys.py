"""Unknown config keys stop the start with a suggestion; known but unused ones are named in warnings."""
import pathlib
import re
import sys

import pytest

from deltallm import config, config_keys
from deltallm.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def entry(params=None, **extra):
    return {"model_name": "m", "deltallm_params": {"model": "openai/gpt-4o-mini", **(params or {})}, **extra}


@pytest.mark.parametrize("raw,message", [
    ({"model_list": [entry({"api_bse": "http://gpu:8000/v1"})]},
     "model_list[0].deltallm_params.api_bse: unknown key; did you mean 'api_base'?"),
    ({"model_list": [entry(model_inf={"mode": "chat"})]},
     "model_list[0].model_inf: unknown key; did you mean 'model_info'?"),
    ({"general_settings": {"master_kye": "sk-x"}},
     "general_settings.master_kye: unknown key; did you mean 'master_key'?"),
    ({"router_settings": {"num_retry": 3}},
     "router_settings.num_retry: unknown key; did you mean 'num_retries'?"),
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_kye": "k"}}]},
     "model_list[0].litellm_params.api_kye: unknown key; did you mean 'api_key'?"),
    ({"model_list": [{"model_name": "m", "deltallm_param": {"model": "openai/x"}}]},
     "model_list[0].deltallm_param: unknown key; did you mean 'deltallm_params'?"),
    ({"model_list": [entry(model_info={"input_cost_per_tokn": 1e-6})]},
     "model_list[0].model_info.input_cost_per_tokn: unknown key; did you mean 'input_cost_per_token'?"),
    ({"model_list": [entry({"model": "mock/m", "mock_latency": 5})]},
     "model_list[0].deltallm_params.mock_latency: unknown key; did you mean 'mock_latency_ms'?"),
    ({"litellm_settings": {"fallback": [{"a": ["b"]}]}},
     "litellm_settings.fallback: unknown key; did you mean 'fallbacks'?"),
    ({"general_settings": {"redis_ur": "redis://x"}},
     "general_settings.redis_ur: unknown key; did you mean 'redis_url'?"),
    ({"mcp_servers": {"docs": {"urll": "http://127.0.0.1:9200/mcp"}}},
     "mcp_servers.docs.urll: unknown key; did you mean 'url'?"),
    ({"mcp_servers": {"docs": {"url": "http://x", "auth": {"type": "bearer", "tokn": "t"}}}},
     "mcp_servers.docs.auth.tokn: unknown key; did you mean 'token'?"),
    ({"general_settings": {"xyzzy": 1}}, "general_settings.xyzzy: unknown key (expected one of: batch_concurrency, batch_lease_seconds, cache, "),
    # provider-specific keys belong to their provider
    ({"model_list": [entry({"aws_region_name": "us-east-1"})]},
     "model_list[0].deltallm_params.aws_region_name: only bedrock/ deployments use this key, "
     "and this one is openai/"),
    ({"model_list": [entry({"api_version": "2024-10-21"})]},
     "model_list[0].deltallm_params.api_version: only azure/ deployments use this key"),
    ({"model_list": [entry({"model": "anthropic/claude", "organization": "org-1"})]},
     "model_list[0].deltallm_params.organization: only OpenAI-compatible and azure/ deployments"),
    ({"model_list": [entry({"model": "groq/llama", "mock_response": "hi"})]},
     "model_list[0].deltallm_params.mock_response: only mock/ deployments use this key"),
    ({"model_list": [entry({"model": "openai/x", "safety_settings": []})]},
     "model_list[0].deltallm_params.safety_settings: only gemini/ deployments use this key"),
    # ambiguous aliases are not silently resolved
    ({"model_list": [{"model_name": "m", "deltallm_params": {"model": "openai/a"},
                      "litellm_params": {"model": "openai/b"}}]},
     "model_list[0].litellm_params: give deltallm_params or its alias litellm_params, not both"),
    ({"deltallm_settings": None, "litellm_settings": {"drop_params": False}}, None),
    ({"deltallm_settings": {"fallbacks": [{"a": ["c"]}]}, "litellm_settings": {"fallbacks": [{"a": ["b"]}]}},
     "litellm_settings: give deltallm_settings or its alias litellm_settings, not both"),
    ({"router_settings": ["num_retries"]}, "router_settings: expected a mapping, got list"),
    ({"model_list": {"m": {}}}, "model_list: expected a list, got dict"),
    ({"mcp_servers": [{"url": "http://x"}]}, "mcp_servers: expected a mapping, got list"),
    ({"mcp_servers": {"docs": "http://x"}}, "mcp_servers.docs: expected a mapping, got str"),
    ({"model_list": ["gpt-4o"]}, "model_list[0]: expected a mapping, got str"),
    ({"model_list": [{"model_name": "m", "deltallm_params": "openai/x"}]},
     "model_list[0].deltallm_params: expected a mapping, got str"),
    ({"environment_variables": ["A=b"]}, "environment_variables: expected a mapping, got list"),
])
def test_unknown_keys_fail_with_one_line_naming_the_key(raw, message):
    if message is None:  # an empty alias next to the other is no conflict
        assert config.from_dict(raw).warnings == []
        return
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_known_but_ignored_settings_are_accepted_with_one_warning_each():
    settings = config.from_dict({
        "model_list": [
            entry({"temperature": 0.2, "rpm": 100, "max_retries": 3},
                  model_info={"id": "dep-1", "mode": "chat", "input_cost_per_token": 1e-6,
                              "base_model": "gpt-4o", "supports_vision": True}),
            {"model_name": "b", "litellm_params": {"model": "bedrock/anthropic.claude", "aws_region_name": "x",
                                                   "aws_role_name": "r"}},
        ],
        "litellm_settings": {"callbacks": ["langfuse"], "success_callback": ["s3"], "cache": True,
                             "drop_params": True, "request_timeout": 30, "fallbacks": [{"m": ["b"]}]},
        "router_settings": {"routing_strategy": "least-busy", "redis_host": "cache", "cooldown_time": 5,
                            "enable_pre_call_checks": True, "num_retries": 1},
        "general_settings": {"master_key": "sk-x", "store_model_in_db": True, "alerting": ["slack"],
                             "database_connection_pool_limit": 10, "proxy_batch_write_at": 60,
                             "embeddings_batch_enabled": True, "metrics_public": True},
        "mcp_servers": {"docs": {"url": "http://127.0.0.1:9200/mcp", "transport": "http"}},
        "callback_settings": {"otel": {"message_logging": False}},
    })
    unsupported, unbuilt = config_keys.NOT_SUPPORTED, config_keys.NOT_BUILT
    assert settings.warnings == [
        f"callback_settings: {unsupported}",
        f"model_list[0].deltallm_params.temperature: {unsupported}",
        f"model_list[0].deltallm_params.max_retries: {unsupported} (use router_settings.num_retries)",
        f"model_list[0].model_info.supports_vision: {unsupported}",
        f"model_list[1].litellm_params.aws_role_name: {unsupported}",
        f"router_settings.redis_host: {unsupported} (use general_settings.redis_url)",
        f"router_settings.enable_pre_call_checks: {unsupported}",
        f"litellm_settings.callbacks: {unsupported}",
        f"litellm_settings.success_callback: {unsupported}",
        f"litellm_settings.cache: {unsupported} (use general_settings.cache)",
        f"litellm_settings.drop_params: {unsupported}",
        f"litellm_settings.request_timeout: {unsupported} (use router_settings.timeout)",
        f"general_settings.store_model_in_db: {unsupported}",
        f"general_settings.alerting: {unsupported}",
        f"general_settings.database_connection_pool_limit: {unsupported}",
        f"general_settings.proxy_batch_write_at: {unsupported}",
        f"general_settings.metrics_public: {unbuilt}",
        f"mcp_servers.docs.transport: {unsupported}",
    ]
    # the settings DeltaLLM does read still apply
    assert settings.router_settings["num_retries"] == 1 and settings.master_key == "sk-x"
    assert settings.model_list[0]["model_info"]["id"] == "dep-1"


def test_ignored_settings_that_are_off_need_no_warning():
    settings = config.from_dict({
        "model_list": [entry(model_info={"id": "x"})],
        "litellm_settings": {"drop_params": False, "callbacks": [], "set_verbose": None},
        "general_settings": {"embeddings_batch_enabled": False, "store_model_in_db": False},
        "router_settings": {"routing_strategy": "simple-shuffle", "fallbacks": []},
        "mcp_servers": {},
    })
    assert settings.warnings == []


def test_spec_example_config_loads(tmp_path, monkeypatch):
    """SPEC.md §2's example is valid; what it asks for that is not built yet is named."""
    for var in ("DELTALLM_MASTER_KEY", "OPENAI_API_KEY", "DOCS_MCP_TOKEN"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///spec.db")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    path = tmp_path / "config.yaml"
    path.write_text(SPEC_EXAMPLE)
    settings = config.load(str(path))
    assert settings.warnings == [
        "deltallm_settings.fallbacks[0].gpt-4o-mini: no model group 'claude-haiku' in this config (it only "
        "works once /admin/models adds one)",
    ]


SPEC_EXAMPLE = """
model_list:
  - model_name: gpt-4o-mini                  # public name clients send
    deltallm_params:                         # alias: litellm_params
      model: openai/gpt-4o-mini              # provider prefix / upstream model
      api_base: https://api.openai.com/v1
      api_key: os.environ/OPENAI_API_KEY     # env substitution
      timeout: 600                           # optional: seconds; stream_timeout; rpm; tpm; weight; api_version
    model_info:                              # optional
      mode: chat
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006
router_settings:
  routing_strategy: simple-shuffle           # simple-shuffle | least-busy | latency-based-routing | usage-based-routing
  num_retries: 2
  timeout: 600
  allowed_fails: 3
  cooldown_time: 60
deltallm_settings:                           # alias: litellm_settings
  fallbacks: [{gpt-4o-mini: [claude-haiku]}]
general_settings:
  master_key: os.environ/DELTALLM_MASTER_KEY
  database_url: os.environ/DATABASE_URL      # absent: SQLite file
  redis_url: os.environ/REDIS_URL            # absent: in-process state and batch runner
  embeddings_batch_enabled: true             # enables /v1/files and /v1/batches
mcp_servers:                                 # optional; also manageable through the admin API
  docs: {url: http://127.0.0.1:9200/mcp, auth: {type: bearer, token: os.environ/DOCS_MCP_TOKEN}}
"""


def test_the_example_config_has_nothing_ignored():
    assert config.load(str(ROOT / "config.example.yaml")).warnings == []


def test_every_deployment_key_a_provider_reads_is_accepted():
    """Keeps the tables honest: a key a provider module reads must be legal for some provider."""
    read = set()
    for source in (ROOT / "deltallm" / "providers").glob("*.py"):
        read |= set(re.findall(r"params(?:\.get\(|\[)\"(\w+)\"", source.read_text()))
    read.discard("properties")  # gemini_request: a tool's JSON-schema `params`, not the deployment's
    assert {"api_base", "aws_region_name", "mock_response", "safety_settings", "stream_usage"} <= read
    legal = set(config.ParamsSchema._declared_fields).union(*config_keys.PROVIDER_PARAMS.values())
    assert read - legal == set()


def test_missing_config_file_is_remembered_for_the_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELTALLM_CONFIG_PATH", raising=False)
    settings = config.load(None)
    assert settings.path is None and settings.searched == str(tmp_path / "config.yaml")
    assert settings.warnings[0].startswith(f"no config file found (looked for {tmp_path / 'config.yaml'}")
    assert config.from_dict({}).warnings == []  # a dict is a config, not a missing file


# -- optional dependencies, named at start (issue 6 item 15) ------------------------------------------
def test_bedrock_without_botocore_is_a_config_error(monkeypatch):
    raw = {"model_list": [entry({"model": "bedrock/anthropic.claude", "aws_region_name": "us-east-1"})]}
    assert config.from_dict(raw)  # botocore is installed here
    monkeypatch.setitem(sys.modules, "botocore", None)  # what `import botocore` sees when it is missing
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    assert str(info.value) == ("model_list[0].deltallm_params.model: bedrock deployments need botocore: "
                               "pip install 'deltallm[bedrock]'")


def test_postgres_without_psycopg2_is_a_config_error(monkeypatch):
    from deltallm import db
    raw = {"general_settings": {"database_url": "postgresql://u:secret@127.0.0.1:5432/x"}}
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    assert str(info.value) == ("general_settings.database_url: PostgreSQL needs the psycopg2 driver: "
                               "pip install 'deltallm[postgres]'")
    monkeypatch.setenv("DATABASE_URL", "postgres://127.0.0.1/x")
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: PostgreSQL needs the psycopg2 driver"):
        config.from_dict({})
    with pytest.raises(ConfigError, match=re.escape("pip install 'deltallm[postgres]'")):
        db.make_database("postgresql://127.0.0.1/x")


def test_postgres_without_psycogreen_warns(monkeypatch):
    raw = {"general_settings": {"database_url": "postgresql://127.0.0.1:5432/x"}}
    assert config.from_dict(raw).warnings == []
    monkeypatch.setitem(sys.modules, "psycogreen", None)
    assert config.from_dict(raw).warnings == [
        "general_settings.database_url: psycogreen is not installed, so each PostgreSQL query blocks its "
        "whole gevent worker: pip install 'deltallm[postgres]'"]


def test_unsupported_database_scheme_fails_at_load():
    with pytest.raises(ConfigError, match=r"^general_settings.database_url: unsupported scheme 'mysql'"):
        config.from_dict({"general_settings": {"database_url": "mysql://x/y"}})


@pytest.mark.parametrize("url,shown", [
    ("postgresql://user:s3cret@db.internal:5432/app?sslmode=require&password=x",
     "postgresql://db.internal:5432/app"),
    ("sqlite:///data/x.db", "SQLite file {cwd}/data/x.db"),
    ("sqlite:////var/lib/x.db", "SQLite file /var/lib/x.db"),
    ("rel.db", "SQLite file {cwd}/rel.db"),
    (None, "SQLite file {cwd}/deltallm.db"),
    ("sqlite://", "SQLite in memory"),
])
def test_describe_database_never_shows_credentials(url, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.describe_database(url) == shown.format(cwd=tmp_path)


def test_describe_url_drops_credentials():
    assert config.describe_url("redis://:s3cret@cache:6380/2") == "redis://cache:6380/2"
    assert config.describe_url("rediss://default:s3cret@[::1]/0") == "rediss://[::1]/0"
    assert config.describe_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"
