"""Governance on the request path: limits and budgets admit or refuse, answers settle, usage is recorded."""
import pytest

from deltallm import create_app, keys, models
from deltallm.models import Usage
from tests.conftest import MASTER_KEY, UPSTREAM
from tests.helpers import completion, parse_sse

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def app(tmp_path):
    config = {
        "model_list": [
            {"model_name": "mocky", "deltallm_params": {"model": "mock/mock-1"},
             "model_info": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}},
            {"model_name": "gpt-4o-mini", "deltallm_params": {"model": "openai/gpt-4o-mini", "api_base": UPSTREAM,
                                                              "api_key": "k"}},
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY, "database_url": str(tmp_path / "m.db")},
    }
    app = create_app(config)
    models.migrate()
    return app


def bearer(**limits):
    return {"Authorization": f"Bearer {keys.create_key(**limits)[1]}"}


def chat(client, headers, model="mocky", **body):
    return client.post("/v1/chat/completions", headers=headers, json={"model": model, "messages": MESSAGES, **body})


def records(app):
    app.extensions["deltallm"].writer.drain()
    return list(Usage.select().order_by(Usage.id))


def test_rpm_limit_refuses_with_retry_after_and_headers_on_every_answer(client):
    headers = bearer(rpm_limit=2)
    first = chat(client, headers)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert chat(client, headers).headers["x-ratelimit-remaining-requests"] == "0"
    refused = chat(client, headers)
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_tpm_headers_and_reservation_corrected_by_real_usage(app, client):
    headers = bearer(tpm_limit=1000)
    resp = chat(client, headers, max_tokens=500)
    assert resp.status_code == 200 and resp.headers["x-ratelimit-limit-tokens"] == "1000"
    used = resp.get_json()["usage"]["total_tokens"]
    # the 500 reserved for max_tokens were given back: the next answer sees only the real usage
    after = chat(client, headers)
    assert int(after.headers["x-ratelimit-remaining-tokens"]) >= 1000 - used - 600
    assert int(after.headers["x-ratelimit-remaining-tokens"]) < 1000 - used


def test_parallel_slot_is_held_by_an_open_stream_and_released_at_its_end(client):
    headers = bearer(max_parallel_requests=1)
    stream = chat(client, headers, stream=True)
    assert stream.status_code == 200
    busy = chat(client, headers)
    assert busy.status_code == 429 and "parallel" in busy.get_json()["error"]["message"]
    stream.get_data()  # the stream ends
    stream.close()
    assert chat(client, headers).status_code == 200


def test_budget_refuses_once_spent(app, client):
    headers = bearer(max_budget=0.05)
    for _ in range(10):
        resp = chat(client, headers)
        if resp.status_code == 429:
            break
    assert resp.status_code == 429 and resp.get_json()["error"]["type"] == "budget_exceeded"
    spent = sum(r.spend for r in records(app))
    assert 0.05 <= spent < 0.05 + 0.1  # at most what one request in flight could add


def test_every_request_that_reached_an_upstream_writes_one_record(app, client, upstream):
    headers = bearer(rpm_limit=100)
    key_id = headers["Authorization"].split("-")[2]
    assert chat(client, headers).status_code == 200
    streamed = chat(client, headers, stream=True, stream_options={"include_usage": True})
    usage = [e for e in parse_sse(streamed.get_data()) if isinstance(e, dict) and e.get("usage")][-1]["usage"]
    streamed.close()  # what the server does once the last byte is sent
    upstream.post(f"{UPSTREAM}/chat/completions", status=500, json={"error": {"message": "down"}})
    assert chat(client, headers, model="gpt-4o-mini").status_code == 502
    assert chat(client, {"Authorization": "Bearer sk-dl-nope-nope"}).status_code == 401   # refused: no record
    assert chat(client, headers, model="nosuch").status_code == 404                         # refused: no record
    rows = records(app)
    assert [(r.model, r.status, r.stream, r.endpoint) for r in rows] == [
        ("mocky", 200, False, "/v1/chat/completions"), ("mocky", 200, True, "/v1/chat/completions"),
        ("gpt-4o-mini", 502, False, "/v1/chat/completions")]
    assert all(r.key_id == key_id and r.request_id.startswith("req_") for r in rows)
    assert rows[1].prompt_tokens == usage["prompt_tokens"] and rows[1].completion_tokens == usage["completion_tokens"]
    assert rows[0].spend == pytest.approx(rows[0].prompt_tokens * 0.001 + rows[0].completion_tokens * 0.002)
    assert rows[2].spend == 0 and rows[2].deployment is not None


def test_a_stream_without_usage_is_recorded_with_the_tokens_seen(app, client):
    resp = chat(client, {"Authorization": f"Bearer {MASTER_KEY}"}, stream=True)
    resp.get_data()
    resp.close()
    row = records(app)[-1]
    assert row.stream and row.prompt_tokens > 0 and row.completion_tokens > 0 and row.key_id is None


def test_images_and_speech_are_billed_per_unit(app, client, upstream):
    from deltallm.governance.prices import Price
    gw = app.extensions["deltallm"]
    deployment = gw.registry.group("gpt-4o-mini")[0]
    deployment._price = Price(name="x", known=True, per_image=0.04, per_character=0.00001)
    upstream.post(f"{UPSTREAM}/images/generations", json={"created": 1, "data": [{"url": "u"}, {"url": "v"}]})
    upstream.post(f"{UPSTREAM}/audio/speech", body=b"ID3audio", content_type="audio/mpeg")
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    assert client.post("/v1/images/generations", headers=master,
                       json={"model": "gpt-4o-mini", "prompt": "cat", "n": 2}).status_code == 200
    speech = client.post("/v1/audio/speech", headers=master,
                         json={"model": "gpt-4o-mini", "input": "a" * 100, "voice": "alloy"})
    speech.get_data()
    speech.close()
    rows = records(app)
    assert [r.endpoint for r in rows] == ["/v1/images/generations", "/v1/audio/speech"]
    assert rows[0].spend == pytest.approx(0.08) and rows[1].spend == pytest.approx(0.001)


def test_spend_counter_equals_the_records_after_mixed_traffic(app, client, upstream):
    """Plain and streamed answers, a client that leaves mid-stream, an upstream failure: the budget's
    spend counter and the usage log agree to the cent."""
    headers = bearer(max_budget=1000.0, budget_duration="1d")
    for _ in range(3):
        assert chat(client, headers).status_code == 200
    full = chat(client, headers, stream=True)
    full.get_data()
    full.close()
    left = chat(client, headers, stream=True)
    next(iter(left.response))  # the client reads one event and goes away
    left.close()
    upstream.post(f"{UPSTREAM}/chat/completions", status=503, json={"error": {"message": "down"}})
    assert chat(client, headers, model="gpt-4o-mini").status_code == 502
    gw = app.extensions["deltallm"]
    rows = records(app)
    assert len(rows) == 6 and sum(1 for r in rows if r.status == 502) == 1
    key_id = headers["Authorization"].split("-")[2]
    policy = gw.keys.authenticate(headers["Authorization"][7:]).policy
    spent, reset_at = gw.limiter.spend(policy)
    assert spent == pytest.approx(sum(r.spend for r in rows if r.key_id == key_id), abs=1e-9)
    assert spent > 0 and reset_at is not None


def test_a_legacy_completion_with_several_prompts_is_recorded_and_billed_once(app, client):
    headers = bearer(rpm_limit=100)
    resp = client.post("/v1/completions", headers=headers, json={"model": "mocky", "prompt": ["a", "b", "c"]})
    assert resp.status_code == 200
    usage = resp.get_json()["usage"]
    rows = records(app)
    assert len(rows) == 1 and rows[0].endpoint == "/v1/completions" and rows[0].status == 200
    assert rows[0].prompt_tokens == usage["prompt_tokens"] and rows[0].completion_tokens == usage["completion_tokens"]
    assert rows[0].spend > 0 and rows[0].deployment is not None
