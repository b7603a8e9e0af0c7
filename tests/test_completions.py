"""POST /v1/completions: prompts become chat requests; answers come back in text_completion shape."""
import json

import pytest
from openai.types import Completion

from tests import openapi
from tests.conftest import UPSTREAM
from tests.helpers import chunk, completion, parse_sse, sse, usage_chunk

URL = UPSTREAM + "/chat/completions"


def post(client, auth, **body):
    body.setdefault("model", "gpt-4o-mini")
    return client.post("/v1/completions", json=body, headers=auth)


def check_shape(data):
    openapi.check("CreateCompletionResponse", data)
    Completion.model_validate(data)


def test_string_prompt_becomes_a_user_message(client, auth, upstream):
    upstream.post(URL, json=completion("Paris.", finish="length"))
    resp = post(client, auth, prompt="Capital of France?", max_tokens=5, stop=["\n"], temperature=0,
                user="u1", n=1)
    assert resp.status_code == 200
    sent = json.loads(upstream.calls[0].request.body)
    assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"], sent["user"]) == (5, ["\n"], 0, "u1")
    assert "prompt" not in sent
    data = resp.get_json()
    check_shape(data)
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-")
    assert data["choices"] == [{"text": "Paris.", "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_list_of_prompts_yields_aligned_choices(client, auth, upstream):
    def reply(request):
        prompt = json.loads(request.body)["messages"][0]["content"]
        body = completion(f"re:{prompt}")
        body["choices"].append(dict(body["choices"][0], index=1, message={"role": "assistant",
                                                                           "content": f"re2:{prompt}"}))
        return 200, {}, json.dumps(body)
    upstream.add_callback("POST", URL, callback=reply)
    data = post(client, auth, prompt=["a", "b", "c"], n=2).get_json()
    check_shape(data)
    assert [(c["index"], c["text"]) for c in data["choices"]] == [
        (0, "re:a"), (1, "re2:a"), (2, "re:b"), (3, "re2:b"), (4, "re:c"), (5, "re2:c")]
    assert data["usage"]["total_tokens"] == 21


@pytest.mark.parametrize("field,value", [("echo", True), ("best_of", 2), ("logprobs", 1), ("logprobs", 0),
                                         ("suffix", "end")])
def test_unsupported_fields_are_400(client, auth, field, value):
    resp = post(client, auth, prompt="x", **{field: value})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["param"] == field


@pytest.mark.parametrize("field,value", [("echo", False), ("best_of", 1), ("logprobs", None), ("suffix", None)])
def test_harmless_values_are_accepted(client, auth, upstream, field, value):
    upstream.post(URL, json=completion())
    assert post(client, auth, prompt="x", **{field: value}).status_code == 200
    assert field not in json.loads(upstream.calls[0].request.body)


@pytest.mark.parametrize("prompt", [[1, 2, 3], [[1, 2]], [], 5, None])
def test_bad_prompts(client, auth, prompt):
    resp = post(client, auth, prompt=prompt)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "prompt"


def test_stream(client, auth, upstream):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                                chunk({"content": "lo"}), chunk({}, "stop"), usage_chunk()),
                  content_type="text/event-stream")
    events = parse_sse(post(client, auth, prompt="hi", stream=True, stream_options={"include_usage": True}).data)
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert texts == ["Hel", "lo", ""]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"]["total_tokens"] == 7 and events[-2]["choices"] == []
    for e in events[:-1]:
        assert e["object"] == "text_completion"
        assert set(e) == {"id", "object", "created", "model", "choices"} | ({"usage"} if "usage" in e else set())
    # OpenAI's schema and SDK type make finish_reason a required string, yet OpenAI's own streams send
    # null until the last chunk (the SDK builds stream chunks without validating); only the chunks
    # that carry a finish reason can pass them.
    check_shape(events[-3])
    Completion.model_validate(events[-2])


def test_stream_of_several_prompts(client, auth):
    events = parse_sse(post(client, auth, model="mocky", prompt=["one", "two"], stream=True).data)
    by_index = {}
    for e in events[:-1]:
        by_index.setdefault(e["choices"][0]["index"], []).append(e["choices"][0]["text"])
    assert "".join(by_index[0]) == "This is a mock response to: one"
    assert "".join(by_index[1]) == "This is a mock response to: two"
    assert "usage" not in events[-2]


def test_mock_non_stream(client, auth):
    data = post(client, auth, model="mocky", prompt="ping").get_json()
    assert data["choices"][0]["text"] == "This is a mock response to: ping"
    check_shape(data)


def test_stream_usage_repeated_on_every_chunk_is_not_summed(client, auth, upstream):
    """Usage is cumulative; upstreams such as vLLM (continuous_usage_stats) send it on every chunk."""
    def running(delta, finish=None, done_tokens=1):
        return dict(chunk(delta, finish), usage={"prompt_tokens": 5, "completion_tokens": done_tokens,
                                                 "total_tokens": 5 + done_tokens})
    upstream.post(URL, body=sse(running({"role": "assistant", "content": "Hel"}),
                                running({"content": "lo"}, done_tokens=2),
                                running({}, "stop", done_tokens=2), usage_chunk()),
                  content_type="text/event-stream")
    events = parse_sse(post(client, auth, prompt=["a", "b"], stream=True, stream_options={"include_usage": True}).data)
    assert events[-2]["usage"] == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}


@pytest.mark.parametrize("field,value", [("messages", [{"role": "user", "content": "other"}]),
                                         ("tools", [{"type": "function", "function": {"name": "f"}}]),
                                         ("tool_choice", "required"), ("functions", [{"name": "f"}]),
                                         ("function_call", "auto"), ("top_logprobs", 2)])
def test_chat_only_fields_are_400_not_overwritten_or_dropped(client, auth, upstream, field, value):
    resp = post(client, auth, prompt="x", **{field: value})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == field
    assert len(upstream.calls) == 0
