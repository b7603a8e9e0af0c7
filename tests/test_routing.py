"""Routing through the HTTP layer: fallbacks, the fallback header, request fallbacks, cooldowns in /admin/models."""
import orjson
import pytest

from deltallm import create_app, keys, models
from tests.conftest import MASTER_KEY, UPSTREAM
from tests.helpers import completion

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
BACKUP = "https://backup.test/v1"
BIG = "https://big.test/v1"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def app(tmp_path):
    config = {
        "model_list": [
            {"model_name": "primary", "deltallm_params": {"model": "openai/p", "api_base": UPSTREAM, "api_key": "k"}},
            {"model_name": "backup", "deltallm_params": {"model": "openai/b", "api_base": BACKUP, "api_key": "k"}},
            {"model_name": "big", "deltallm_params": {"model": "openai/big", "api_base": BIG, "api_key": "k"}},
        ],
        "router_settings": {"num_retries": 1, "cooldown_time": 60, "allowed_fails": 5,
                            "fallbacks": [{"primary": ["backup"]}],
                            "model_group_alias": {"nickname": "primary"}},
        "deltallm_settings": {"context_window_fallbacks": [{"primary": ["big"]}]},
        "general_settings": {"master_key": MASTER_KEY, "database_url": str(tmp_path / "r.db")},
    }
    app = create_app(config)
    models.migrate()
    return app


def chat(client, headers=MASTER, **body):
    return client.post("/v1/chat/completions", headers=headers, json={"model": "primary", "messages": MESSAGES, **body})


def test_a_failing_primary_falls_back_and_says_so(client, upstream):
    upstream.post(f"{UPSTREAM}/chat/completions", status=500, json={"error": {"message": "down"}})
    upstream.post(f"{BACKUP}/chat/completions", json=completion("from backup"))
    resp = chat(client)
    assert resp.status_code == 200 and resp.get_json()["choices"][0]["message"]["content"] == "from backup"
    assert resp.headers["x-deltallm-fallback"] == "backup"
    assert len([c for c in upstream.calls if c.request.url.startswith(UPSTREAM)]) == 2  # num_retries 1


def test_a_context_length_error_goes_to_the_context_window_fallbacks(client, upstream):
    upstream.post(f"{UPSTREAM}/chat/completions", status=400, json={"error": {
        "message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
        "code": "context_length_exceeded"}})
    upstream.post(f"{BIG}/chat/completions", json=completion("from big"))
    resp = chat(client)
    assert resp.status_code == 200 and resp.headers["x-deltallm-fallback"] == "big"
    assert [c.request.url.split("/v1")[0] for c in upstream.calls] == ["https://upstream.test", "https://big.test"]


def test_request_fallbacks_override_and_are_never_forwarded(client, upstream):
    upstream.post(f"{UPSTREAM}/chat/completions", status=503, json={"error": {"message": "down"}})
    upstream.post(f"{BIG}/chat/completions", json=completion("from big"))
    resp = chat(client, fallbacks=["big"])
    assert resp.status_code == 200 and resp.headers["x-deltallm-fallback"] == "big"
    assert all("fallbacks" not in orjson.loads(c.request.body) for c in upstream.calls)
    bad = chat(client, fallbacks="big")
    assert bad.status_code == 400 and bad.get_json()["error"]["param"] == "fallbacks"


def test_a_fallback_the_key_may_not_use_is_skipped(client, upstream):
    _, key = keys.create_key(models=["primary"])
    upstream.post(f"{UPSTREAM}/chat/completions", status=500, json={"error": {"message": "down"}})
    resp = chat(client, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 502 and not [c for c in upstream.calls if c.request.url.startswith(BACKUP)]


def test_aliases_route_to_their_group_and_are_listed(client, upstream):
    upstream.post(f"{UPSTREAM}/chat/completions", json=completion("hi"))
    resp = client.post("/v1/chat/completions", headers=MASTER, json={"model": "nickname", "messages": MESSAGES})
    assert resp.status_code == 200
    assert "nickname" in [m["id"] for m in client.get("/v1/models", headers=MASTER).get_json()["data"]]


def test_a_credentials_failure_cools_the_deployment_and_shows_in_admin_models(client, upstream):
    upstream.post(f"{UPSTREAM}/chat/completions", status=401, json={"error": {"message": "bad key"}})
    upstream.post(f"{BACKUP}/chat/completions", json=completion("from backup"))
    assert chat(client).headers["x-deltallm-fallback"] == "backup"
    calls = len(upstream.calls)
    assert chat(client).status_code == 200
    assert len(upstream.calls) == calls + 1  # the cooling primary is skipped: straight to the fallback
    health = {d["model_name"]: d["health"] for d in client.get("/admin/models", headers=MASTER).get_json()["data"]}
    assert health["primary"]["state"] == "cooling" and health["primary"]["cooling_until"].endswith("Z")
    assert health["backup"]["state"] == "healthy" and health["backup"]["latency_ms"] is not None


def test_every_deployment_cooling_without_fallback_is_503(client, upstream):
    upstream.post(f"{BACKUP}/chat/completions", status=429, headers={"Retry-After": "1"},
                  json={"error": {"message": "slow down"}})
    first = client.post("/v1/chat/completions", headers=MASTER, json={"model": "backup", "messages": MESSAGES})
    # the same deployment was retried once after its Retry-After, then the 429 is the answer
    assert first.status_code == 429 and first.headers["Retry-After"] == "1" and len(upstream.calls) == 2
    second = client.post("/v1/chat/completions", headers=MASTER, json={"model": "backup", "messages": MESSAGES})
    assert second.status_code == 503 and second.get_json()["error"]["code"] == "no_healthy_deployments"
    assert 1 <= int(second.headers["Retry-After"]) <= 60


def test_fallbacks_naming_unknown_groups_are_warned_about(tmp_path):
    from deltallm import config
    settings = config.from_dict({
        "model_list": [{"model_name": "a", "deltallm_params": {"model": "mock/a"}}],
        "router_settings": {"fallbacks": [{"a": ["claude-haikuu"]}], "model_group_alias": {"x": "nope"}},
        "litellm_settings": {"context_window_fallbacks": [{"typo": ["a"]}]},
    })
    assert "router_settings.fallbacks[0].a: no model group 'claude-haikuu' in this config" in " ".join(settings.warnings)
    assert any(w.startswith("router_settings.model_group_alias.x: no model group 'nope'") for w in settings.warnings)
    assert any(w.startswith("litellm_settings.context_window_fallbacks[0].typo: no model group 'typo'")
               for w in settings.warnings)
