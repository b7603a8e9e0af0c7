"""POST /v1/chat/completions through the OpenAI-compatible provider, with the upstream mocked."""
import json

import pytest
import requests
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests import openapi
from tests.conftest import UPSTREAM
from tests.helpers import chunk, completion, parse_sse, sse, usage_chunk

URL = UPSTREAM + "/chat/completions"
MESSAGES = [{"role": "user", "content": "Hi"}]


def post(client, auth, **body):
    body.setdefault("model", "gpt-4o-mini")
    body.setdefault("messages", MESSAGES)
    return client.post("/v1/chat/completions", json=body, headers=auth)


def test_chat_is_passed_through_with_upstream_credentials(client, auth, api_key, upstream):
    upstream.post(URL, json=completion())
    resp = post(client, auth, temperature=0.2, some_new_openai_param={"x": 1},
                messages=[{"role": "developer", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    assert resp.status_code == 200
    sent = upstream.calls[0].request
    assert sent.url == URL
    assert sent.headers["Authorization"] == "Bearer upstream-secret"
    assert api_key not in json.dumps(dict(sent.headers))
    body = json.loads(sent.body)
    assert body["model"] == "gpt-4o-mini"
    assert body["temperature"] == 0.2
    assert body["some_new_openai_param"] == {"x": 1}
    assert body["messages"][0] == {"role": "developer", "content": "Be brief."}
    data = resp.get_json()
    assert data["model"] == "gpt-4o-mini-2024-07-18"  # what the upstream reported
    openapi.check("CreateChatCompletionResponse", data)
    ChatCompletion.model_validate(data)
    assert resp.headers["x-request-id"].startswith("req_")
    assert float(resp.headers["x-deltallm-overhead-ms"]) >= 0
    assert resp.headers["x-deltallm-deployment"].startswith("dep_")


def test_client_request_id_is_kept(client, auth, upstream):
    upstream.post(URL, json=completion())
    resp = client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES},
                       headers={**auth, "x-request-id": "my-id-1"})
    assert resp.headers["x-request-id"] == "my-id-1"


def test_tool_call_history_is_accepted(client, auth, upstream):
    upstream.post(URL, json=completion("It is sunny."))
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    resp = post(client, auth, messages=messages, tools=tools, tool_choice="auto")
    assert resp.status_code == 200
    assert json.loads(upstream.calls[0].request.body)["messages"] == messages


def test_stream_with_usage(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": ""}, usage=True), chunk({"content": "Hel"}, usage=True),
               chunk({"content": "lo"}, usage=True), chunk({}, "stop", usage=True), usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    resp = post(client, auth, stream=True, stream_options={"include_usage": True})
    assert resp.status_code == 200
    assert resp.mimetype == "text/event-stream"
    events = parse_sse(resp.data)
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["total_tokens"] == 7 and events[-2]["choices"] == []
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2]) == "Hello"
    for event in events[:-1]:
        openapi.check("CreateChatCompletionStreamResponse", event)
        ChatCompletionChunk.model_validate(event)
    sent = json.loads(upstream.calls[0].request.body)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_without_usage_hides_the_usage_chunk(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": "Hi"}, usage=True), chunk({}, "stop", usage=True),
               usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    resp = post(client, auth, stream=True)
    events = parse_sse(resp.data)
    assert events[-1] == "[DONE]"
    assert len(events) == 3
    assert all("usage" not in e for e in events[:-1])
    # the gateway still asks the upstream for usage, for its own accounting
    assert json.loads(upstream.calls[0].request.body)["stream_options"] == {"include_usage": True}


def test_stream_error_after_first_byte_ends_with_error_event(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": "Hi"}),
               {"error": {"message": "model crashed", "type": "server_error"}}, done=False)
    upstream.post(URL, body=body, content_type="text/event-stream")
    events = parse_sse(post(client, auth, stream=True).data)
    assert events[0]["choices"][0]["delta"]["content"] == "Hi"
    assert "[DONE]" not in events
    assert events[-1]["error"]["type"] == "upstream_error"
    assert "model crashed" in events[-1]["error"]["message"]


def test_stream_failure_before_first_byte_is_retried(client, auth, upstream):
    upstream.post(URL, status=503, json={"error": {"message": "busy"}})
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop")),
                  content_type="text/event-stream")
    resp = post(client, auth, stream=True)
    assert resp.status_code == 200
    assert parse_sse(resp.data)[-1] == "[DONE]"
    assert len(upstream.calls) == 2


def test_group_spreads_over_deployments_and_strips_prefix(client, auth, upstream):
    upstream.post(URL, json=completion())
    upstream.post("https://groq.test/v1/chat/completions", json=completion(model="b"))
    for _ in range(30):
        assert post(client, auth, model="grouped").status_code == 200
    by_host = {}
    for call in upstream.calls:
        by_host.setdefault(call.request.url, []).append(call.request)
    assert set(by_host) == {URL, "https://groq.test/v1/chat/completions"}
    groq = by_host["https://groq.test/v1/chat/completions"][0]
    assert json.loads(groq.body)["model"] == "b"
    assert groq.headers["Authorization"] == "Bearer groq-secret"


@pytest.mark.parametrize("status,upstream_body,expected_status,expected_type,expected_code", [
    (400, {"error": {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature",
                     "code": "invalid_value"}}, 400, "invalid_request_error", "invalid_value"),
    (404, {"error": {"message": "no such model upstream", "type": "invalid_request_error",
                     "code": "model_not_found"}}, 404, "invalid_request_error", "model_not_found"),
    (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}},
     502, "upstream_error", "upstream_auth_failed"),
    (403, {"error": {"message": "forbidden"}}, 502, "upstream_error", "upstream_auth_failed"),
    (500, {"error": {"message": "boom"}}, 502, "upstream_error", "upstream_error"),
    (429, {"error": {"message": "slow down"}}, 429, "rate_limit_error", "upstream_rate_limited"),
])
def test_upstream_errors_are_mapped(client, auth, upstream, monkeypatch, status, upstream_body, expected_status,
                                    expected_type, expected_code):
    upstream.post(URL, status=status, json=upstream_body, headers={"Retry-After": "7"})
    slept = []
    monkeypatch.setattr("deltallm.router.router.time.sleep", slept.append)
    resp = post(client, auth)
    assert resp.status_code == expected_status
    error = resp.get_json()["error"]
    assert (error["type"], error["code"]) == (expected_type, expected_code)
    openapi.check("ErrorResponse", resp.get_json())
    retryable = status >= 500 or status == 429
    assert len(upstream.calls) == (3 if retryable else 1)  # num_retries: 2
    if status == 429:
        assert resp.headers["Retry-After"] == "7"
        assert slept == [7.0, 7.0]  # the only deployment is retried after the upstream's Retry-After
    if status == 400:
        assert error["message"] == "bad temperature" and error["param"] == "temperature"


def test_retry_then_success(client, auth, upstream):
    upstream.post(URL, status=500, json={"error": {"message": "boom"}})
    upstream.post(URL, json=completion())
    resp = post(client, auth)
    assert resp.status_code == 200
    assert len(upstream.calls) == 2


def test_upstream_timeout_is_504(client, auth, upstream):
    upstream.post(URL, body=requests.exceptions.ReadTimeout("slow"))
    resp = post(client, auth)
    assert resp.status_code == 504
    assert resp.get_json()["error"]["type"] == "timeout_error"


def test_connection_error_is_502(client, auth, upstream):
    upstream.post(URL, body=requests.exceptions.ConnectionError("refused"))
    resp = post(client, auth)
    assert resp.status_code == 502
    assert resp.get_json()["error"]["code"] == "upstream_error"


def test_non_json_upstream_body_is_502(client, auth, upstream):
    upstream.post(URL, body=b"<html>oops</html>", status=200)
    resp = post(client, auth)
    assert resp.status_code == 502


def test_mock_provider_replies_deterministically(client, auth):
    resp = post(client, auth, model="mocky", messages=[{"role": "user", "content": "ping"}])
    data = resp.get_json()
    assert data["choices"][0]["message"]["content"] == "This is a mock response to: ping"
    openapi.check("CreateChatCompletionResponse", data)
    events = parse_sse(post(client, auth, model="mocky", stream=True,
                            stream_options={"include_usage": True}).data)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2])
    assert text == "This is a mock response to: Hi"
    assert events[-2]["usage"]["completion_tokens"] == 7


def test_mock_response_override_and_max_tokens(client, auth):
    data = post(client, auth, model="mocky", mock_response="one two three", max_tokens=2).get_json()
    assert data["choices"][0]["message"]["content"] == "one two"
    assert data["choices"][0]["finish_reason"] == "length"


def test_responses_mock_rejects_unexpected_calls(client, auth):
    """Guard for the fixture itself: with no registered URL the upstream call fails -> 502."""
    with responses.RequestsMock() as mock:
        mock.post(URL, body=requests.exceptions.ConnectionError("nope"))
        assert post(client, auth).status_code == 502


def test_stream_cut_before_the_end_is_an_error_not_an_answer(client, auth, upstream):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "Hal"}), done=False),
                  content_type="text/event-stream")
    events = parse_sse(post(client, auth, stream=True).data)
    assert events[0]["choices"][0]["delta"]["content"] == "Hal"
    assert "[DONE]" not in events and "ended before" in events[-1]["error"]["message"]


def test_stream_without_done_marker_but_finished_is_accepted(client, auth, upstream):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop"), done=False),
                  content_type="text/event-stream")
    assert parse_sse(post(client, auth, stream=True).data)[-1] == "[DONE]"


def test_overhead_header_excludes_upstream_time(tmp_path):
    import time

    from deltallm import create_app, models
    from tests.conftest import base_config
    cfg = base_config(tmp_path)
    cfg["model_list"].append({"model_name": "slow", "deltallm_params": {"model": "mock/slow", "mock_latency_ms": 300}})
    app = create_app(cfg)
    models.migrate()
    client = app.test_client()
    for stream in (False, True):
        started = time.perf_counter()
        resp = client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-master-test"},
                           json={"model": "slow", "stream": stream, "messages": MESSAGES})
        resp.get_data()
        assert time.perf_counter() - started >= 0.3
        overhead = float(resp.headers["x-deltallm-overhead-ms"])
        assert 0 <= overhead < 150, overhead  # the 300 ms upstream wait is not the gateway's
        assert resp.headers["x-request-id"] and resp.headers["x-deltallm-deployment"].startswith("dep_")
