"""The response cache through gunicorn/gevent with the openai SDK: a repeated request is a hit (JSON and
streamed), replayed streams read like live ones, and the hits are usage records of cost 0."""
import time
import uuid

import openai
import pytest
import requests

from tests.e2e.conftest import MASTER, running_gateway

CONFIG = f"""
model_list:
  - model_name: mocky
    deltallm_params: {{model: mock/mock-1, mock_chunk_delay_ms: 2}}
    model_info: {{input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}}
general_settings:
  master_key: {MASTER}
  database_url: {{db}}
  cache: {{type: local, ttl: 60}}
"""


@pytest.fixture(scope="module")
def cached_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    # one worker: the local cache is per worker (with several, use type: redis)
    with running_gateway(CONFIG.replace("{db}", str(tmp / "cache.db")), tmp, WEB_CONCURRENCY="1") as url:
        yield url


def test_sdk_requests_are_answered_from_the_cache(cached_gateway):
    key = requests.post(cached_gateway + "/admin/keys", json={"name": "cache-e2e"},
                        headers={"Authorization": f"Bearer {MASTER}"}, timeout=10).json()
    client = openai.OpenAI(base_url=cached_gateway + "/v1", api_key=key["key"], max_retries=0, timeout=30)
    messages = [{"role": "user", "content": f"cache me {uuid.uuid4().hex}"}]
    labels, answers = [], []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="mocky", messages=messages, temperature=0)
        labels.append(raw.headers["x-deltallm-cache"])
        answers.append(raw.parse())
    assert labels == ["miss", "hit"] and answers[0] == answers[1]
    with client.chat.completions.with_streaming_response.create(
            model="mocky", messages=messages, temperature=0, stream=True,
            stream_options={"include_usage": True}) as raw:
        assert raw.headers["x-deltallm-cache"] == "hit"  # a stream from the cached JSON answer
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answers[0].choices[0].message.content
    assert chunks[-1].usage.total_tokens == answers[0].usage.total_tokens
    sampled = client.chat.completions.with_raw_response.create(model="mocky", messages=messages)
    assert sampled.headers["x-deltallm-cache"] == "skip"  # default temperature 1: sampled
    deadline = time.monotonic() + 10
    while True:
        rows = requests.get(cached_gateway + f"/admin/usage?key_id={key['id']}", timeout=10,
                            headers={"Authorization": f"Bearer {MASTER}"}).json()["data"]
        if len(rows) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    hits = [row for row in rows if row["cache_hit"]]
    assert len(rows) == 4 and len(hits) == 2
    assert all(row["spend"] == 0 and row["total_tokens"] == 0 and row["status"] == 200 for row in hits)
    assert {row["stream"] for row in hits} == {True, False}
    assert all(row["spend"] > 0 for row in rows if not row["cache_hit"])
