"""Anthropic: what Claude refuses is translated, thinking and prompt caching round-trip (issue 12, items 4-8)."""
import orjson
import pytest
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import InvalidRequest, UpstreamRejected
from deltallm.providers import anthropic, anthropic_request
from deltallm.providers.base import Call
from deltallm.router.deployment import Deployment
from tests.fakes.anthropic import sign

URL = "https://api.anthropic.test/v1/messages"
USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}}}}
EPHEMERAL = {"type": "ephemeral"}


@pytest.fixture
def deployment():
    return Deployment("claude", {"model": "anthropic/claude-sonnet-4-5", "api_key": "k",
                                 "api_base": "https://api.anthropic.test/v1"})


def request(deployment, **fields):
    return anthropic_request.to_request(deployment, dict({"messages": USER}, **fields))


def sent():
    return orjson.loads(responses.calls[-1].request.body)


# -- item 4: temperature and top_p ------------------------------------------------------------
@pytest.mark.parametrize("fields,expected", [
    ({"temperature": 0.3, "top_p": 0.8}, {"temperature": 0.3}),
    ({"temperature": 0, "top_p": 1}, {"temperature": 0}),
    ({"top_p": 1}, {}),
    ({"top_p": 0.5}, {"top_p": 0.5}),
    ({"temperature": 1.5}, {"temperature": 1.5}),
])
@responses.activate
def test_temperature_wins_over_top_p(deployment, fields, expected):
    responses.add(responses.POST, URL, json={"id": "m", "type": "message", "role": "assistant", "model": "c",
                                             "content": [], "stop_reason": "end_turn", "usage": {}})
    deployment.adapter.chat(Call("r"), dict({"messages": USER}, **fields))
    assert sent() == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "messages": USER, **expected}


# -- item 5: whitespace-only stop sequences ---------------------------------------------------
@pytest.mark.parametrize("stop,expected", [
    (["\n"], None), ("\n\n", None), (["\n", " ", "END", "\nUser:"], ["END", "\nUser:"]), (" x ", [" x "])])
def test_whitespace_stop_sequences_are_dropped(deployment, stop, expected):
    assert request(deployment, stop=stop).get("stop_sequences") == expected


# -- item 6: image media types ----------------------------------------------------------------
def image(url):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


@pytest.mark.parametrize("given,sent_as", [("image/jpg", "image/jpeg"), ("IMAGE/JPEG", "image/jpeg"),
                                           ("image/webp", "image/webp"), ("image/gif", "image/gif")])
def test_image_media_types_are_normalised(deployment, given, sent_as):
    body = request(deployment, messages=image(f"data:{given};base64,AAAA"))
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": sent_as, "data": "AAAA"}}]


@pytest.mark.parametrize("kind", ["image/bmp", "image/tiff", "image/svg+xml", "application/pdf"])
def test_unsupported_image_types_are_400_before_the_call(deployment, kind):
    with pytest.raises(InvalidRequest) as err:
        request(deployment, messages=image(f"data:{kind};base64,AAAA"))
    assert err.value.param == "messages[0].content[0].image_url.url" and "image/jpeg" in err.value.message


# -- item 8: assistant-first conversations ----------------------------------------------------
def test_assistant_first_history_gets_a_minimal_user_turn(deployment):
    body = request(deployment, messages=[{"role": "system", "content": "S"},
                                         {"role": "assistant", "content": "How can I help?"},
                                         {"role": "user", "content": "hi"}])
    assert body["messages"] == [{"role": "user", "content": "."},
                                {"role": "assistant", "content": "How can I help?"},
                                {"role": "user", "content": "hi"}]
    assert body["system"] == "S"


# -- item 7: reasoning_effort -> extended thinking ----------------------------------------------
@pytest.mark.parametrize("effort,budget,max_tokens", [
    ("minimal", 1024, 4096), ("low", 2048, 4096), ("medium", 8192, 8192 + 4096), ("high", 16384, 16384 + 4096)])
def test_reasoning_effort_enables_thinking(deployment, effort, budget, max_tokens):
    body = request(deployment, reasoning_effort=effort, temperature=0.2, top_p=0.5, top_k=3)
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": max_tokens, "messages": USER,
                    "thinking": {"type": "enabled", "budget_tokens": budget}}


def test_thinking_max_tokens_and_top_p(deployment):
    assert request(deployment, reasoning_effort="low", max_completion_tokens=500)["max_tokens"] == 2548
    assert request(deployment, reasoning_effort="low", max_tokens=9000)["max_tokens"] == 9000
    assert request(deployment, reasoning_effort="low", top_p=0.97)["top_p"] == 0.97
    assert "thinking" not in request(deployment, reasoning_effort="none")
    with pytest.raises(InvalidRequest) as err:
        request(deployment, reasoning_effort="extreme")
    assert err.value.param == "reasoning_effort"


def test_thinking_with_forced_tools(deployment):
    with pytest.raises(InvalidRequest) as err:
        request(deployment, reasoning_effort="low", tools=[WEATHER], tool_choice="required")
    assert err.value.param == "tool_choice"
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    body = request(deployment, reasoning_effort="low", response_format=schema)
    assert body["tool_choice"] == {"type": "auto"} and body["tools"][0]["name"] == "answer"
    assert body["system"] == anthropic_request.JSON_TOOL_INSTRUCTION.format("answer")


def test_thinking_blocks_go_back_first_in_the_assistant_turn(deployment):
    thinking = [{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"}]
    history = USER + [{"role": "assistant", "content": None, "reasoning_content": "hmm", "thinking_blocks": thinking,
                       "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                      {"role": "tool", "tool_call_id": "t1", "content": "sunny"}]
    body = request(deployment, messages=history, tools=[WEATHER], reasoning_effort="low")
    assert body["messages"][1] == {"role": "assistant", "content": thinking + [
        {"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]}
    with pytest.raises(InvalidRequest) as err:
        request(deployment, messages=USER + [{"role": "assistant", "content": "x",
                                              "thinking_blocks": [{"type": "thinking", "thinking": "no signature"}]}])
    assert err.value.param == "messages[1].thinking_blocks[0]"


def test_thinking_comes_back_as_reasoning_content(deployment):
    data = {"id": "m", "type": "message", "role": "assistant", "model": "c", "stop_reason": "end_turn",
            "content": [{"type": "thinking", "thinking": "Let me see.", "signature": "s1"},
                        {"type": "redacted_thinking", "data": "r1"}, {"type": "text", "text": "Yes."}],
            "usage": {"input_tokens": 3, "output_tokens": 5}}
    out = anthropic.from_response(deployment, data)
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"] == {
        "role": "assistant", "content": "Yes.", "refusal": None, "reasoning_content": "Let me see.",
        "thinking_blocks": [{"type": "thinking", "thinking": "Let me see.", "signature": "s1"},
                            {"type": "redacted_thinking", "data": "r1"}]}


def test_streamed_thinking_is_reasoning_content_then_the_signed_block(deployment):
    translator = anthropic.StreamTranslator(deployment)
    events = [{"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let "}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "me see."}},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s1"}},
              {"type": "content_block_stop", "index": 0},
              {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "r"}},
              {"type": "content_block_stop", "index": 1},
              {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
              {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Yes."}}]
    chunks = [c for e in events for c in translator.feed(e["type"], e)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert [c["choices"][0]["delta"] for c in chunks[1:]] == [
        {"reasoning_content": "Let "}, {"reasoning_content": "me see."},
        {"thinking_blocks": [{"type": "thinking", "thinking": "Let me see.", "signature": "s1"}]},
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "r"}]}, {"content": "Yes."}]


# -- item 7: cache_control passes through; cache tokens are reported ------------------------------
def test_cache_control_on_parts_messages_and_tools(deployment):
    tool = dict(WEATHER, cache_control=EPHEMERAL)
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Long rules", "cache_control": EPHEMERAL},
                                       {"type": "text", "text": "More"}]},
        {"role": "user", "content": [{"type": "text", "text": "Doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                                     {"type": "text", "text": "Question"}]},
        {"role": "assistant", "content": "Answer", "cache_control": EPHEMERAL},
        {"role": "user", "content": "Next", "cache_control": EPHEMERAL}]
    body = request(deployment, messages=messages, tools=[tool])
    assert body["system"] == [{"type": "text", "text": "Long rules", "cache_control": EPHEMERAL},
                              {"type": "text", "text": "More"}]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                                     {"type": "text", "text": "Question"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Answer", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "Next", "cache_control": EPHEMERAL}]}]
    assert body["tools"] == [{"name": "weather", "input_schema": WEATHER["function"]["parameters"],
                              "cache_control": EPHEMERAL}]
    with pytest.raises(InvalidRequest) as err:
        request(deployment, tools=[dict(WEATHER, cache_control="yes")])
    assert err.value.param == "tools[0].cache_control"


def test_cache_tokens_in_prompt_tokens_details():
    usage = anthropic.usage_of({"input_tokens": 5, "cache_creation_input_tokens": 20,
                                "cache_read_input_tokens": 100, "output_tokens": 9})
    assert usage == {"prompt_tokens": 125, "completion_tokens": 9, "total_tokens": 134,
                     "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}}
    call = Call("r")
    call.add_usage(usage)
    call.add_usage(usage)
    assert call.usage["prompt_tokens_details"] == {"cached_tokens": 200, "cache_write_tokens": 40}


# -- the strict fake: a two-turn tool loop with thinking --------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_fake_tool_loop_with_thinking(upstream_url, stream):
    dep = Deployment("claude", {"model": "anthropic/claude-sonnet-4-5", "api_key": "upstream-secret",
                                "api_base": upstream_url + "/v1"})
    body = {"messages": [{"role": "user", "content": "weather in Oslo"}], "tools": [WEATHER],
            "reasoning_effort": "low", "temperature": 0.5, "stop": ["\n"]}
    if stream:
        chunks = list(dep.adapter.chat_stream(Call("r"), body))
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        message = {"role": "assistant", "content": None,
                   "reasoning_content": "".join(d.get("reasoning_content") or "" for d in deltas),
                   "thinking_blocks": [b for d in deltas for b in d.get("thinking_blocks") or []],
                   "tool_calls": [{"id": t["id"], "type": "function", "function": {
                       "name": t["function"]["name"],
                       "arguments": "".join(u["function"]["arguments"] for d in deltas for u in d.get("tool_calls") or [])}}
                       for d in deltas for t in d.get("tool_calls") or [] if t.get("id")]}
    else:
        message = dep.adapter.chat(Call("r"), body)["choices"][0]["message"]
    assert message["reasoning_content"] == "Thinking about: echo: weather in Oslo"
    assert message["thinking_blocks"][0]["signature"] == sign(message["reasoning_content"])
    call_id = message["tool_calls"][0]["id"]
    body["messages"] += [message, {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]
    final = dep.adapter.chat(Call("r"), body)["choices"][0]
    assert final["finish_reason"] == "stop" and final["message"]["content"] == "echo: weather in Oslo"
    assert final["message"]["reasoning_content"].startswith("Thinking about:")
    # a tool turn without its signed block (dropped by the client, or from another provider): Anthropic
    # would refuse thinking, so this turn goes without it
    body["messages"][1] = {k: v for k, v in message.items() if k != "thinking_blocks"}
    assert "thinking" not in anthropic_request.to_request(dep, body)
    unthought = dep.adapter.chat(Call("r"), body)["choices"][0]["message"]
    assert unthought["content"] == "echo: weather in Oslo" and "reasoning_content" not in unthought
    tampered = dict(message["thinking_blocks"][0], thinking="something else")
    body["messages"][1] = dict(message, thinking_blocks=[tampered])
    with pytest.raises(UpstreamRejected) as err:  # a block changed by the client is refused upstream
        dep.adapter.chat(Call("r"), body)
    assert "signature" in str(err.value.message)
