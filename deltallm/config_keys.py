"""Which keys each config mapping may hold: a typo is an error, a known but unused key a warning.

Three kinds of key are accepted: the ones DeltaLLM reads (the marshmallow schema fields in config.py,
plus the few listed here), the ones SPEC.md names but that are not built yet (PENDING: delete a line
when its feature lands), and LiteLLM's (FOREIGN: DeltaLLM will not act on them). Anything else stops
the start with a "did you mean" suggestion, so that `api_bse` or `master_kye` is never silently ignored.
"""
import difflib

from deltallm.errors import ConfigError
from deltallm.providers.families import FAMILIES

NOT_BUILT = "ignored: not implemented yet"
NOT_SUPPORTED = "ignored: not supported by DeltaLLM"

MODEL_ENTRY = {"model_name", "deltallm_params", "litellm_params", "model_info"}
MCP_SERVER = {"url", "auth", "description"}
MCP_AUTH = {"type", "token", "headers"}

# deltallm_params keys that only one provider reads; elsewhere they are an error, not a no-op.
_OPENAI_WIRE = {"organization", "stream_usage", "rerank_api"}
PROVIDER_PARAMS = {
    **{family: _OPENAI_WIRE for family in FAMILIES},
    "azure": _OPENAI_WIRE | {"api_version"},
    "bedrock": {"aws_region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                "aws_profile_name", "aws_bedrock_runtime_endpoint"},
    "gemini": {"safety_settings"},
    "mock": {"mock_response", "mock_latency_ms", "mock_chunk_delay_ms", "mock_dimensions", "mock_tool_calls"},
    "anthropic": set(),
    "cohere": set(),
}

PRICES = {
    "input_cost_per_token", "output_cost_per_token", "input_cost_per_token_batches",
    "output_cost_per_token_batches", "cache_creation_input_token_cost", "cache_read_input_token_cost",
    "input_cost_per_character", "output_cost_per_character", "input_cost_per_second",
    "output_cost_per_second", "input_cost_per_image", "output_cost_per_image",
    "input_cost_per_audio_token", "output_cost_per_audio_token", "output_cost_per_reasoning_token",
    "input_cost_per_token_above_128k_tokens", "output_cost_per_token_above_128k_tokens",
    "input_cost_per_token_above_200k_tokens", "output_cost_per_token_above_200k_tokens",
    "input_cost_per_query", "input_cost_per_request", "input_cost_per_pixel", "output_cost_per_pixel",
    "input_cost_per_audio_per_second", "input_cost_per_video_per_second", "search_context_cost_per_query",
}

# model_info keys DeltaLLM reads: the deployment id, a group's strategy, prices (base_model: whose), the
# endpoints it serves (mode) and an embedding model's default input_type (Cohere, Gemini's taskType)
MODEL_INFO = {"id", "routing_strategy", "base_model", "mode", "input_type"} | PRICES

# SPEC.md settings not built yet: accepted with a warning. Delete entries as the features land.
PENDING = {
    "general_settings": {"metrics_token", "metrics_public", "metrics_key_labels"},
}
# routing strategies SPEC.md names that are not built yet (simple-shuffle is used instead)
PENDING_STRATEGIES = set()
PENDING_SECTIONS = set()

# LiteLLM's documented settings that DeltaLLM accepts and ignores; a value is a hint for the warning.
FOREIGN = {
    "top_level": {"callback_settings": "", "assistant_settings": "", "guardrails": "", "credential_list": "",
                  "include": "", "files_settings": "", "finetune_settings": "", "vector_store_registry": "",
                  "search_tools": ""},
    "deltallm_params": {
        **dict.fromkeys(
            ["temperature", "top_p", "max_completion_tokens", "stop", "seed", "frequency_penalty",
             "presence_penalty", "n", "response_format", "reasoning_effort", "thinking", "drop_params",
             "additional_drop_params", "tags", "custom_llm_provider", "region_name", "vertex_project",
             "vertex_location", "vertex_credentials", "aws_role_name", "aws_session_name",
             "aws_web_identity_token", "aws_sts_endpoint", "aws_external_id", "azure_ad_token", "tenant_id",
             "client_id", "client_secret", "azure_username", "azure_password", "azure_scope",
             "litellm_credential_name", "use_in_pass_through", "use_litellm_proxy",
             "merge_reasoning_content_in_choices", "max_budget", "budget_duration",
             "configurable_clientside_auth_params", "cache_control_injection_points", "api_type",
             "base_model", "input_cost_per_second", "output_cost_per_second", "mock_timeout",
             "auto_router_config", "auto_router_config_path", "auto_router_default_model",
             "auto_router_embedding_model"], ""),
        "max_retries": "use router_settings.num_retries",
        "num_retries": "use router_settings.num_retries",
        "headers": "use extra_headers",
        "input_cost_per_token": "prices belong in model_info",
        "output_cost_per_token": "prices belong in model_info",
    },
    "model_info": dict.fromkeys(
        ["max_tokens", "max_input_tokens", "max_output_tokens", "litellm_provider",
         "description", "metadata", "access_groups", "tier", "team_id", "team_public_model_name", "db_model",
         "output_vector_size", "deprecation_date", "supported_openai_params", "supported_endpoints",
         "supported_modalities", "supported_output_modalities", "tpm", "rpm", "key", "health_check_model",
         "supports_function_calling", "supports_parallel_function_calling", "supports_vision",
         "supports_response_schema", "supports_system_messages", "supports_tool_choice",
         "supports_audio_input", "supports_audio_output", "supports_prompt_caching", "supports_reasoning",
         "supports_pdf_input", "supports_web_search", "supports_computer_use",
         "supports_embedding_image_input", "supports_native_streaming", "supports_assistant_prefill",
         "supports_url_context", "supports_video_input"], ""),
    "router_settings": {
        **dict.fromkeys(
            ["enable_pre_call_checks", "enable_pre_call_check", "disable_cooldowns", "enable_tag_filtering",
             "tag_filtering_match_any", "retry_policy", "allowed_fails_policy", "default_max_parallel_requests",
             "default_priority", "polling_interval", "max_fallbacks", "default_litellm_params",
             "stream_timeout", "debug_level", "client_ttl", "cache_kwargs", "routing_strategy_args",
             "default_fallbacks", "caching_groups", "set_verbose", "provider_budget_config",
             "model_group_retry_policy", "optional_pre_call_checks",
             "deployment_affinity_ttl_seconds", "ignore_invalid_deployments", "search_tools",
             "guardrail_list", "alerting_config", "assistants_config", "router_general_settings"], ""),
        **dict.fromkeys(["redis_host", "redis_port", "redis_password", "redis_db", "redis_url"],
                        "use general_settings.redis_url"),
        "cache_responses": "use general_settings.cache",
    },
    "deltallm_settings": {
        **dict.fromkeys(
            ["success_callback", "failure_callback", "callbacks", "service_callbacks", "service_callback",
             "turn_off_message_logging", "redact_user_api_key_info", "langfuse_default_tags", "modify_params",
             "enable_preview_features", "set_verbose", "json_logs", "default_fallbacks", "force_ipv4",
             "mcp_aliases", "disable_end_user_cost_tracking",
             "disable_end_user_cost_tracking_prometheus_only", "key_generation_settings",
             "disable_add_transform_inline_image_block", "disable_hf_tokenizer_download",
             "enable_json_schema_validation", "enable_key_alias_format_validation", "drop_params",
             "max_parallel_requests", "upperbound_key_generate_params", "default_key_generate_params",
             "max_budget", "budget_duration", "max_internal_user_budget", "internal_user_budget_duration",
             "max_end_user_budget", "default_team_settings", "default_internal_user_params", "telemetry",
             "public_teams", "ssl_verify", "disable_copilot_system_to_assistant", "allowed_fails",
             "cooldown_time", "use_chat_completions_url_for_anthropic_messages", "callback_settings",
             "default_max_internal_user_budget", "global_disable_no_log_param"], ""),
        "request_timeout": "use router_settings.timeout",
        "num_retries": "use router_settings.num_retries",
        **dict.fromkeys(["cache", "cache_params"], "use general_settings.cache"),
    },
    "general_settings": {
        **dict.fromkeys(
            ["store_model_in_db", "database_connection_pool_limit", "database_connection_timeout",
             "proxy_batch_write_at", "alerting", "alerting_threshold", "alerting_args", "alert_types",
             "alert_to_webhook_url", "allow_requests_on_db_unavailable", "completion_model",
             "store_prompts_in_spend_logs", "forward_client_headers_to_llm_api", "disable_spend_logs",
             "disable_spend_updates", "disable_master_key_return",
             "disable_retry_on_max_parallel_request_limit_error", "disable_reset_budget",
             "disable_adding_master_key_hash_to_db", "disable_responses_id_security", "enable_jwt_auth",
             "enforce_user_param", "reject_clientside_metadata_tags", "allowed_routes",
             "key_management_system", "key_management_settings", "maximum_spend_logs_retention_period",
             "maximum_spend_logs_retention_interval", "user_mcp_management_mode", "custom_auth",
             "max_parallel_requests", "global_max_parallel_requests", "infer_model_from_keys",
             "health_check_details",
             "use_client_credentials_pass_through_routes", "public_routes", "enforced_params",
             "enable_oauth2_auth", "use_x_forwarded_for", "service_account_settings",
             "image_generation_model", "supported_db_objects", "max_response_size_mb",
             "proxy_budget_rescheduler_min_time", "proxy_budget_rescheduler_max_time",
             "proxy_batch_polling_interval", "custom_key_generate", "allowed_ips", "embedding_model",
             "default_team_disabled", "allow_user_auth", "user_api_key_cache_ttl",
             "disable_prisma_schema_update", "litellm_key_header_name", "moderation_model", "custom_sso",
             "allow_client_side_credentials", "admin_only_routes", "use_azure_key_vault", "use_google_kms",
             "spend_report_frequency", "ui_access_mode", "litellm_jwtauth", "litellm_license",
             "oauth2_config_mappings", "pass_through_endpoints", "enable_oauth2_proxy_auth",
             "forward_openai_org_id", "master_key_rotation", "ui_username", "ui_password"], ""),
        **dict.fromkeys(["background_health_checks", "health_check_interval"],
                        "use router_settings.health_check_interval"),
        "max_request_size_mb": "use general_settings.max_request_body_mb",
    },
    "mcp_server": dict.fromkeys(
        ["transport", "auth_type", "spec_version", "command", "args", "env", "mcp_info", "static_headers",
         "extra_headers", "allowed_tools", "disallowed_tools", "server_id", "alias", "authentication_token",
         "access_groups", "allowed_params"], ""),
}


def section_of(name):
    """The table key for a config section: LiteLLM's names share DeltaLLM's tables."""
    return {"litellm_settings": "deltallm_settings", "litellm_params": "deltallm_params"}.get(name, name)


def check(data, where, table, own, extra_known=()):
    """Raise ConfigError for the first key of `data` that no table knows; return the ignored ones.

    `own`: the keys DeltaLLM reads there. Returns [(dotted path, reason)] for PENDING and FOREIGN keys.
    """
    pending, foreign = PENDING.get(table, set()), FOREIGN.get(table, {})
    ignored = []
    for key, value in data.items():
        name = str(key)
        path = f"{where}.{name}" if where else name
        if name in pending:
            if not inert(value):
                ignored.append((path, NOT_BUILT))
        elif name in own or name in extra_known:
            continue
        elif name in foreign:
            hint = foreign[name]
            if not inert(value):
                ignored.append((path, f"{NOT_SUPPORTED} ({hint})" if hint else NOT_SUPPORTED))
        else:
            raise ConfigError(unknown_key(path, name, set(own) | set(pending) | set(extra_known) | set(foreign),
                                          set(own) | set(pending)))
    return ignored


def inert(value):
    """An ignored key set to off or nothing changes nothing, so it needs no warning (0 may mean something)."""
    return value is None or value is False or (isinstance(value, (str, list, dict)) and not value)


def unknown_key(path, name, candidates, listed):
    """One line: the key, and the closest known one (or the short list of DeltaLLM's own keys)."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    if close:
        return f"{path}: unknown key; did you mean '{close[0]}'?"
    return f"{path}: unknown key (expected one of: {', '.join(sorted(listed))})"


def check_model_entry(entry, where, param_fields):
    """One model_list entry (or an admin-registered model): returns (its params key, ignored keys)."""
    mapping(entry, where)
    ignored = check(entry, where, "model_entry", MODEL_ENTRY)
    if "deltallm_params" in entry and "litellm_params" in entry:
        raise ConfigError(f"{where}.litellm_params: give deltallm_params or its alias litellm_params, not both")
    block = "litellm_params" if "litellm_params" in entry else "deltallm_params"
    params = mapping(entry.get(block) or {}, f"{where}.{block}")
    model = params.get("model")
    provider = (model.partition("/")[0] if "/" in model else "openai") if isinstance(model, str) else None
    ignored += check_params(params, f"{where}.{block}", provider, param_fields)
    info = mapping(entry.get("model_info") or {}, f"{where}.model_info")
    return block, ignored + check(info, f"{where}.model_info", "model_info", MODEL_INFO)


def check_params(params, where, provider, own):
    """deltallm_params: provider-specific keys are legal only for their provider."""
    mine = PROVIDER_PARAMS.get(provider)
    everyone = set().union(*PROVIDER_PARAMS.values())
    common = set(own) - everyone
    for key in params:
        owners = sorted(p for p, keys in PROVIDER_PARAMS.items() if key in keys)
        if owners and mine is not None and key not in mine:
            shown = "OpenAI-compatible and azure/" if set(owners) >= set(FAMILIES) else \
                " or ".join(f"{p}/" for p in owners)
            raise ConfigError(f"{where}.{key}: only {shown} deployments use this key, "
                              f"and this one is {provider}/")
    return check(params, where, "deltallm_params", common | (mine if mine is not None else everyone),
                 extra_known=everyone)


def check_mcp_servers(servers):
    """mcp_servers: a mapping of server keys to entries (each checked by config_sections.mcp_server_entry)."""
    for server, entry in mapping(servers, "mcp_servers").items():
        mapping(entry, f"mcp_servers.{server}")
    return servers


def check_sections(raw):
    """Sections SPEC.md names that are not built yet: one warning for the whole section."""
    return [(name, NOT_BUILT) for name in sorted(PENDING_SECTIONS) if not inert(raw.get(name))]


def mapping(data, where):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data
