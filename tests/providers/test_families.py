"""OpenAI-compatible families (issue 12, item 18): per-family rewrites and gateway-only fields, pinned."""
import orjson
import pytest
import responses

from deltallm.providers.base import Call
from deltallm.providers.families import CHAT_REWRITES
from deltallm.router.deployment import Deployment

BASE = "https://upstream.test/v1"
ANSWER = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
FULL = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 50, "seed": 7,
        "user": "u-1", "store": True, "service_tier": "auto", "logit_bias": {"1": 2}, "reasoning_effort": "low",
        "parallel_tool_calls": False, "metadata": {"team": "a"}, "mock_response": "pinned",
        "mock_tool_calls": "first", "temperature": 0.2}


def sent(family, body, stream=False):
    adapter = Deployment("m", {"model": f"{family}/up-model", "api_key": "k", "api_base": BASE}).adapter
    with responses.RequestsMock() as mock:
        if stream:
            mock.post(BASE + "/chat/completions", content_type="text/event-stream", body=(
                b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":'
                b'[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'))
            list(adapter.chat_stream(Call("r"), body))
        else:
            mock.post(BASE + "/chat/completions", json=ANSWER)
            adapter.chat(Call("r"), body)
        return orjson.loads(mock.calls[0].request.body)


def test_mistral_gets_its_own_field_names_and_nothing_it_refuses():
    assert sent("mistral", FULL) == {
        "model": "up-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
        "random_seed": 7, "parallel_tool_calls": False, "temperature": 0.2}


def test_mistral_stream_drops_stream_options():
    assert sent("mistral", dict(FULL, stream_options={"include_usage": True}), stream=True) == {
        "model": "up-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
        "random_seed": 7, "parallel_tool_calls": False, "temperature": 0.2, "stream": True}


def test_explicit_max_tokens_wins_over_the_renamed_limit():
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
            "max_completion_tokens": 50}
    assert sent("mistral", body)["max_tokens"] == 10
    assert "max_completion_tokens" not in sent("mistral", body)


def test_perplexity_rewrites():
    assert sent("perplexity", {"model": "x", "messages": [], "max_completion_tokens": 5, "store": False}) == {
        "model": "up-model", "messages": [], "max_tokens": 5}


@pytest.mark.parametrize("family", ["openai", "groq", "vllm", "deepseek"])
def test_gateway_only_fields_never_go_upstream(family):
    payload = sent(family, FULL)
    assert not {"mock_response", "mock_tool_calls"} & set(payload)
    assert ("metadata" in payload) == (family == "openai")
    assert payload["max_completion_tokens"] == 50 and payload["user"] == "u-1"  # untouched elsewhere


def test_every_rule_names_a_known_family():
    from deltallm.providers.families import FAMILIES
    assert set(CHAT_REWRITES) <= set(FAMILIES)


def test_reasoning_echoed_from_a_native_answer_is_not_forwarded():
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "reasoning_content": "r", "thinking_blocks": [
                   {"type": "thinking", "thinking": "r", "signature": "s"}], "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    assert sent("deepseek", {"model": "x", "messages": history})["messages"] == [
        history[0], {"role": "assistant", "content": None, "tool_calls": history[1]["tool_calls"]}, history[2]]
