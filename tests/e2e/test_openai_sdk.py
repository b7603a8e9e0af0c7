"""The official openai SDK against real gunicorn/gevent workers and our fake upstream process."""
import json
import time

import openai
import pytest
import requests

from tests import openapi
from tests.e2e.conftest import MASTER

HELLO = [{"role": "user", "content": "Hello gateway"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
                                            "parameters": {"type": "object",
                                                           "properties": {"q": {"type": "string"}}}}}]


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert {"gpt-4o-mini", "claude", "mocky"} <= set(ids)


def test_chat_and_gateway_headers(client, upstream_log):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: Hello gateway"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.usage.total_tokens > 0
    assert raw.headers["x-request-id"] and float(raw.headers["x-deltallm-overhead-ms"]) >= 0
    assert raw.headers["x-deltallm-deployment"].startswith("dep_")
    openapi.check("CreateChatCompletionResponse", json.loads(raw.text))
    sent = upstream_log()
    assert len(sent) == 1
    assert sent[0]["headers"]["authorization"] == "Bearer upstream-secret"
    assert MASTER not in json.dumps(sent)


def test_stream_with_usage(client):
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Hello gateway"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_arrives_incrementally(gateway_url):
    """Chunks are forwarded as produced (mock delays 5 ms between words), not buffered to the end."""
    body = {"model": "mocky", "stream": True, "messages": [{"role": "user", "content": " ".join(["w"] * 60)}]}
    arrivals = []
    with requests.post(gateway_url + "/v1/chat/completions", json=body, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {MASTER}"}) as resp:
        for line in resp.iter_lines():
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) > 60
    assert arrivals[-1] - arrivals[0] > 0.2  # spread over the production time


def test_tool_calls_round_trip(client):
    first = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and first.choices[0].finish_reason == "tool_calls"
    second = client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=HELLO + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "42"}])
    assert second.choices[0].finish_reason == "stop"


def test_bad_key(gateway_url):
    bad = openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert info.value.body["code"] == "invalid_api_key"


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert info.value.body["code"] == "model_not_found"


def test_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "wizard", "content": "x"}])
    assert info.value.body["param"] == "messages[0].role"


def test_upstream_failure_is_retried(client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"[[status:503]][[once]] {time.time()}"}])
    assert completion.choices[0].message.content.startswith("echo:")


def test_wrong_upstream_credentials_are_not_the_clients_fault(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="misconfigured", messages=HELLO)
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_auth_failed"


def test_stream_broken_mid_way_raises_in_the_sdk(client):
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                            messages=[{"role": "user", "content": "[[stream-break]] hi"}])
    with pytest.raises(openai.APIError):
        list(stream)


def test_virtual_key_lifecycle_across_workers(gateway_url):
    admin = {"Authorization": f"Bearer {MASTER}"}
    created = requests.post(gateway_url + "/admin/keys", json={"models": ["mocky"]}, headers=admin, timeout=10)
    assert created.status_code == 201
    key = openai.OpenAI(base_url=gateway_url + "/v1", api_key=created.json()["key"], max_retries=0)
    assert [m.id for m in key.models.list()] == ["mocky"]
    assert key.chat.completions.create(model="mocky", messages=HELLO).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        key.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert requests.delete(f"{gateway_url}/admin/keys/{created.json()['id']}", headers=admin,
                           timeout=10).status_code == 200
    time.sleep(1.1)
    for _ in range(6):  # two workers: every one of them must refuse it now
        with pytest.raises(openai.AuthenticationError):
            key.models.list()


def test_client_disconnect_stops_the_upstream_stream(gateway_url, upstream_url):
    """A client that goes away mid-stream must not leave the upstream generating (and billing)."""
    prompt = f"[[word-delay:0.1]] {' '.join(['word'] * 100)} {time.time()}"
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    with requests.post(gateway_url + "/v1/chat/completions", json=body, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {MASTER}"}) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith(b"data: "))
    # the connection is closed here, ~10 s before the upstream would finish
    outcome = None
    for _ in range(50):
        outcome = requests.get(upstream_url + "/_streams", timeout=5).json().get(prompt)
        if outcome:
            break
        time.sleep(0.1)
    assert outcome == "aborted"
