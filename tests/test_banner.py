"""The startup banner: what the server will serve, without credentials, and every ignored setting."""
import logging

from deltallm import banner, config, create_app


def test_banner_lists_groups_services_and_warnings(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:r3dispw@cache.internal:6380/2")
    settings = config.from_dict({
        "model_list": [
            {"model_name": "fast", "deltallm_params": {"model": "mock/a"}},
            {"model_name": "fast", "deltallm_params": {"model": "groq/b", "api_key": "gsk-secret"}},
            {"model_name": "smart", "litellm_params": {"model": "anthropic/claude", "api_key": "sk-ant"}},
        ],
        "general_settings": {"database_url": "postgresql://app:pgs3cret@db.internal:5432/gateway",
                             "master_key": "sk-master-secret", "embeddings_batch_enabled": True,
                             "metrics_public": True},
        "litellm_settings": {"drop_params": True},
        "mcp_servers": {"docs": {"url": "http://127.0.0.1:9200/mcp"}},
    })
    lines = banner.lines(settings)
    text = "\n".join(line for _, line in lines)
    for secret in ("r3dispw", "pgs3cret", "sk-master-secret", "gsk-secret", "sk-ant", "app:"):
        assert secret not in text
    assert [line for _, line in lines][1:] == [
        "model groups (2): fast (2 deployments), smart (1 deployment)",
        "database: postgresql://db.internal:5432/gateway",
        "redis: redis://cache.internal:6380/2 (from REDIS_URL)",
        "batches: RQ workers on Redis",
        "mcp servers: docs",
        "master key: set",
        "litellm_settings.drop_params: ignored: not supported by DeltaLLM",
        "general_settings.metrics_public: ignored: not implemented yet",
    ]
    assert [level for level, _ in lines][-3:] == [logging.INFO] + [logging.WARNING] * 2


def test_banner_for_the_embedded_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = [line for _, line in banner.lines(config.load(None))]
    assert lines[1:] == [
        "model groups (0): none",
        f"database: SQLite file {tmp_path / 'deltallm.db'}",
        "redis: none (rate limits and router state in process memory)",
        "batches: off",
        "mcp servers: none",
        "master key: not set: the admin API is closed; create keys with `deltallm keys create`",
        f"no config file found (looked for {tmp_path / 'config.yaml'}; use --config FILE or "
        "DELTALLM_CONFIG_PATH): serving no models",
    ]


def test_without_our_gunicorn_master_each_process_logs_the_warnings(tmp_path, caplog, monkeypatch):
    raw = {"general_settings": {"database_url": str(tmp_path / "b.db"), "store_model_in_db": True}}
    monkeypatch.setattr(banner, "announced", False)
    with caplog.at_level(logging.WARNING, logger="deltallm"):
        create_app(dict(raw))
    assert [r.getMessage() for r in caplog.records if r.name == "deltallm.banner"] == [
        "master key: not set: the admin API is closed; create keys with `deltallm keys create`",
        "general_settings.store_model_in_db: ignored: not supported by DeltaLLM"]
    caplog.clear()
    monkeypatch.setattr(banner, "announced", True)  # a worker forked from the master that showed them
    with caplog.at_level(logging.WARNING, logger="deltallm"):
        create_app(dict(raw))
    assert not [r for r in caplog.records if r.name == "deltallm.banner"]
