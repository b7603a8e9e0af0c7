"""Routing end to end (real gunicorn, fake upstream): retries, fallbacks, deadlines, shared cooldowns."""
import time

import openai
import pytest
import requests

from tests.conftest import REDIS_URL
from tests.e2e.conftest import MASTER, running_gateway

MESSAGES = [{"role": "user", "content": "route me"}]


def config(upstream, db_path, extra=""):
    dep = "{{model: openai/{model}, api_base: {base}, api_key: {key}{more}}}"

    def entry(group, model, key="upstream-secret", base=f"{upstream}/v1", more=""):
        return f"  - model_name: {group}\n    deltallm_params: " + dep.format(model=model, base=base, key=key, more=more)
    return "\n".join([
        "model_list:",
        entry("resilient", "fail-500", more=", weight: 1000"),
        entry("resilient", "gpt-4o-mini"),
        entry("refused", "gpt-4o-mini", base="http://127.0.0.1:1/v1"),
        entry("long", "ctx-limit"),
        entry("ok", "gpt-4o-mini"),
        entry("hang", "hang", more=", timeout: 2"),
        entry("limited", "rate-limit"),
        entry("pooled", "gpt-4o-mini", key="wrong-key", more=", weight: 1000"),
        entry("pooled", "gpt-4o-mini"),
        "router_settings:",
        "  num_retries: 2",
        "  fallbacks: [{refused: [ok]}]",
        "  context_window_fallbacks: [{long: [ok]}]",
        f"general_settings: {{master_key: {MASTER}, database_url: {db_path}}}",
        extra,
    ])


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routing")
    with running_gateway(config(upstream_url, tmp / "r.db"), tmp, REDIS_URL=REDIS_URL) as url:
        yield url


def chat(url, model):
    return requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                         json={"model": model, "messages": MESSAGES}, timeout=60)


def test_a_failing_deployment_is_retried_on_the_healthy_one(gateway):
    resp = chat(gateway, "resilient")
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: route me"


def test_connection_failures_fall_back_with_the_sdk(gateway):
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="refused", messages=MESSAGES)
    assert raw.headers["x-deltallm-fallback"] == "ok" and raw.parse().choices[0].message.content == "echo: route me"


def test_context_length_errors_use_the_context_window_fallbacks(gateway):
    resp = chat(gateway, "long")
    assert resp.status_code == 200 and resp.headers["x-deltallm-fallback"] == "ok"


def test_a_hanging_upstream_answers_504_within_the_timeout(gateway):
    started = time.monotonic()
    resp = chat(gateway, "hang")
    took = time.monotonic() - started
    assert resp.status_code == 504 and resp.json()["error"]["type"] == "timeout_error"
    assert took < 12  # timeout 2 s (plus connect); never the upstream's 30 s, nor 3 x 2 s retries


def test_429_with_retry_after_then_the_deployment_cools(gateway):
    resp = chat(gateway, "limited")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    for _ in range(10):  # the other worker hears of the cooldown within its next trade with Redis
        time.sleep(0.3)
        cooling = chat(gateway, "limited")
        if cooling.status_code == 503:
            break
    assert cooling.status_code == 503 and cooling.json()["error"]["code"] == "no_healthy_deployments"


def test_cooldowns_are_shared_by_the_workers(gateway, upstream_url):
    requests.delete(upstream_url + "/_requests", timeout=5)
    first = chat(gateway, "pooled")  # the heavy deployment has the wrong key: 401, cools at once
    assert first.status_code == 200
    time.sleep(0.5)  # the other worker hears of the cooldown within its next trade with Redis
    for _ in range(20):  # new connections: the two workers share them
        assert chat(gateway, "pooled").status_code == 200
    log = requests.get(upstream_url + "/_requests", timeout=5).json()
    wrong = [r for r in log if r["headers"].get("authorization") == "Bearer wrong-key"]
    assert len(wrong) == 1
    models = requests.get(f"{gateway}/admin/models", headers={"Authorization": f"Bearer {MASTER}"}, timeout=10).json()
    states = [d["health"]["state"] for d in models["data"] if d["model_name"] == "pooled"]
    assert sorted(states) == ["cooling", "healthy"]
