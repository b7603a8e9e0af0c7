"""Bedrock fidelity (issue 12, items 15-17): pinned Converse requests and translated answers."""
import orjson
import pytest
from openai.types.chat import ChatCompletion

from deltallm.errors import InvalidRequest, UpstreamError
from deltallm.providers import bedrock, bedrock_request
from deltallm.router.deployment import Deployment

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def deployment(model=CLAUDE):
    return Deployment("b", {"model": "bedrock/" + model, "aws_region_name": "us-east-1",
                            "aws_access_key_id": "AKID", "aws_secret_access_key": "SECRET"})


def request(model=CLAUDE, **body):
    return bedrock_request.to_request(deployment(model), {"messages": USER, **body})


def reply(content, stop="end_turn"):
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}}


# -- item 15: json_object is enforced ----------------------------------------------------------
def test_json_object_on_claude_is_an_instruction_and_a_forced_tool():
    assert request(response_format={"type": "json_object"}) == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "Respond with a single valid JSON object and nothing else: no prose, "
                            "no Markdown code fences."}],
        "toolConfig": {"tools": [{"toolSpec": {
            "name": "json_object", "description": "Give the answer, a JSON object, as this tool's input.",
            "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"tool": {"name": "json_object"}}}}


def test_json_object_with_own_tools_or_other_models_is_an_instruction():
    for payload in (request(response_format={"type": "json_object"}, tools=[WEATHER]),
                    request("meta.llama3-70b-instruct-v1:0", response_format={"type": "json_object"})):
        assert payload["system"][-1]["text"].startswith("Respond with a single valid JSON object")
        assert payload.get("toolConfig", {}).get("toolChoice") is None


def test_forced_json_tool_answer_is_content():
    body = {"messages": USER, "response_format": {"type": "json_object"}}
    req = bedrock_request.to_request(deployment(), body)
    data = reply([{"toolUse": {"toolUseId": "t1", "name": "json_object", "input": {"a": 1}}}], "tool_use")
    out = bedrock.from_response(deployment(), data, None, bedrock.answer_tool(body, req))
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"a":1}', "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"
    state = bedrock.StreamState(deployment(), "x", "json_object")
    events = [("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "json_object"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"a":'}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
              ("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "tool_use"})]
    chunks = [c for e in events for c in bedrock.from_stream_event(state, *e)]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == '{"a":1}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)


# -- item 16: Claude sampling, top_k, thinking; assistant-first --------------------------------
def test_claude_temperature_wins_over_top_p_and_top_k_goes_to_model_fields():
    payload = request(temperature=0.3, top_p=0.9, top_k=40)
    assert payload["inferenceConfig"] == {"temperature": 0.3}
    assert payload["additionalModelRequestFields"] == {"top_k": 40}
    assert request(top_p=0.9)["inferenceConfig"] == {"topP": 0.9}
    other = request("mistral.mistral-large-2402-v1:0", temperature=0.3, top_p=0.9)
    assert other["inferenceConfig"] == {"temperature": 0.3, "topP": 0.9}
    with pytest.raises(InvalidRequest) as err:
        request("mistral.mistral-large-2402-v1:0", top_k=5)
    assert err.value.param == "top_k"


@pytest.mark.parametrize("effort, budget, limit, max_tokens", [
    ("minimal", 1024, None, 5120), ("low", 2048, 100, 2148), ("medium", 8192, 20000, 20000),
    ("high", 16384, None, 20480)])
def test_reasoning_effort_is_claude_thinking(effort, budget, limit, max_tokens):
    payload = request(reasoning_effort=effort, temperature=0.5, top_p=0.5, top_k=3, max_tokens=limit)
    assert payload["inferenceConfig"] == {"maxTokens": max_tokens}  # sampling settings removed
    assert payload["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": budget}}


def test_reasoning_effort_refused_on_other_models():
    with pytest.raises(InvalidRequest) as err:
        request("meta.llama3-70b-instruct-v1:0", reasoning_effort="low")
    assert err.value.param == "reasoning_effort"


def test_thinking_comes_back_and_its_signed_blocks_go_back():
    data = reply([{"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig=="}}},
                  {"reasoningContent": {"redactedContent": "cmVk"}},
                  {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {}}}], "tool_use")
    message = bedrock.from_response(deployment(), data)["choices"][0]["message"]
    assert message["reasoning_content"] == "Need weather."
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "Need weather.", "signature": "sig=="},
                                          {"type": "redacted_thinking", "data": "cmVk"}]
    history = [*USER, message, {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"}]
    payload = request(messages=history, tools=[WEATHER], reasoning_effort="low")
    assert payload["messages"][1] == {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig=="}}},
        {"reasoningContent": {"redactedContent": "cmVk"}},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {}}}]}


def test_streamed_thinking_is_reasoning_content_then_a_signed_block():
    state = bedrock.StreamState(deployment(), "x")
    events = [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hm"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "m."}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "s1"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "ok"}})]
    deltas = [c["choices"][0]["delta"] for e in events for c in bedrock.from_stream_event(state, *e)]
    assert deltas[1:] == [{"reasoning_content": "Hm"}, {"reasoning_content": "m."},
                          {"thinking_blocks": [{"type": "thinking", "thinking": "Hmm.", "signature": "s1"}]},
                          {"content": "ok"}]


def test_assistant_first_conversation_gets_an_opening_user_turn():
    assert request(messages=[{"role": "assistant", "content": "Hello! How can I help?"}, *USER])["messages"] == [
        {"role": "user", "content": [{"text": "."}]},
        {"role": "assistant", "content": [{"text": "Hello! How can I help?"}]},
        {"role": "user", "content": [{"text": "hi"}]}]


# -- item 17: malformed stops are upstream errors ---------------------------------------------
@pytest.mark.parametrize("stop", ["malformed_tool_use", "malformed_model_output"])
def test_malformed_stops_are_retryable_upstream_errors(stop):
    with pytest.raises(UpstreamError) as err:
        bedrock.from_response(deployment(), reply([{"text": ""}], stop))
    assert err.value.retryable and stop in str(err.value)
    state = bedrock.StreamState(deployment(), "x")
    with pytest.raises(UpstreamError):
        bedrock.from_stream_event(state, "messageStop", {"stopReason": stop})


def test_pinned_request_bytes_for_thinking_tool_loop():
    """The exact upstream JSON for a second turn of a Claude tool loop with reasoning."""
    history = [*USER, {"role": "assistant", "content": None, "thinking_blocks": [
        {"type": "thinking", "thinking": "t", "signature": "s"}], "tool_calls": [
        {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": "sunny"}]
    payload = request(messages=history, tools=[WEATHER], reasoning_effort="minimal")
    assert orjson.dumps(payload) == orjson.dumps({
        "messages": [{"role": "user", "content": [{"text": "hi"}]},
                     {"role": "assistant", "content": [
                         {"reasoningContent": {"reasoningText": {"text": "t", "signature": "s"}}},
                         {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {}}}]},
                     {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1",
                                                                  "content": [{"text": "sunny"}]}}]}],
        "inferenceConfig": {"maxTokens": 5120},
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}}]}})


def test_thinking_skipped_for_a_tool_turn_without_signed_reasoning():
    """History from another model of a mixed group: Claude refuses thinking there, so it is not sent."""
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"}]
    payload = request(messages=history, tools=[WEATHER], reasoning_effort="low", temperature=0.2)
    assert "additionalModelRequestFields" not in payload
    assert payload["inferenceConfig"] == {"temperature": 0.2}
    assert request(reasoning_effort="low")["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 2048
