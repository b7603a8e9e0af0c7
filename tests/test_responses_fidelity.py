"""Response objects carry every field OpenAI's do, `include` is accepted, reasoning is echoed only when
applied (issue 12, items 1 and 2)."""
import pytest

from deltallm.translate.responses import REASONING_PREFIX, as_applied, decode_reasoning, from_completion, to_chat
from deltallm.translate.responses_stream import EventStream
from tests.helpers import chunk, completion, sse, usage_chunk
from tests.test_responses import URL, check_events, checked, post, sent, stream_events

# Every field of OpenAI's Response (the API reference example plus what the API returns today).
KEYS = {"id", "object", "created_at", "status", "completed_at", "background", "error", "incomplete_details",
        "instructions", "max_output_tokens", "max_tool_calls", "model", "output", "parallel_tool_calls",
        "previous_response_id", "reasoning", "store", "temperature", "text", "tool_choice", "tools", "top_p",
        "top_logprobs", "presence_penalty", "frequency_penalty", "service_tier", "truncation", "usage", "user",
        "safety_identifier", "prompt_cache_key", "metadata"}
DEFAULTS = {"temperature": 1, "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0, "top_logprobs": 0,
            "service_tier": "default", "truncation": "disabled", "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "text": {"format": {"type": "text"}}, "reasoning": {"effort": None, "summary": None},
            "safety_identifier": None, "prompt_cache_key": None, "user": None, "max_output_tokens": None,
            "max_tool_calls": None, "previous_response_id": None, "instructions": None, "metadata": {},
            "incomplete_details": None, "error": None, "store": False, "background": False, "object": "response"}
LOGPROBS = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                         "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}]}


def test_a_response_has_every_field_with_openais_defaults(client, auth, upstream):
    upstream.post(URL, json=completion())
    data = post(client, auth).get_json()
    checked(data)
    assert set(data) == KEYS
    assert {k: data[k] for k in DEFAULTS} == DEFAULTS
    assert data["status"] == "completed" and data["usage"]["total_tokens"] == 7


def test_sent_settings_are_echoed(client, auth, upstream):
    upstream.post(URL, json=completion())
    fields = {"temperature": 0.2, "top_p": 0.5, "service_tier": "auto", "user": "u", "safety_identifier": "s",
              "prompt_cache_key": "k", "max_tool_calls": 3, "reasoning": {"effort": "low"}, "top_logprobs": 2}
    data = post(client, auth, **fields).get_json()
    checked(data)
    expected = dict(fields, service_tier="default", reasoning={"effort": "low", "summary": None})
    assert {k: data[k] for k in fields} == expected  # gpt-4o-mini is an OpenAI upstream: effort applied
    assert sent(upstream)["reasoning_effort"] == "low"


def test_every_stream_event_response_has_the_same_keys(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": "Hi"}), chunk({}, "stop"), usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    events = check_events(stream_events(post(client, auth, stream=True)))
    responses = [e["response"] for e in events if "response" in e]
    assert [set(r) for r in responses] == [KEYS] * 3
    assert [r["usage"] for r in responses[:2]] == [None, None] and responses[2]["usage"]["total_tokens"] == 7


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_is_echoed_only_when_the_provider_applies_it(client, auth, stream):
    resp = post(client, auth, model="mocky", reasoning={"effort": "high"}, stream=stream)
    data = stream_events(resp)[-1]["response"] if stream else resp.get_json()
    assert data["reasoning"] == {"effort": None, "summary": None}  # the mock does no reasoning
    assert as_applied({"reasoning": {"effort": "low"}}, object())["reasoning"] == {"effort": None}


@pytest.mark.parametrize("include", [["reasoning.encrypted_content"], ["file_search_call.results"],
                                     ["web_search_call.action.sources", "message.input_image.image_url"], []])
def test_include_values_that_cannot_be_honoured_are_accepted(client, auth, upstream, include):
    upstream.post(URL, json=completion())
    assert post(client, auth, include=include).status_code == 200
    assert sent(upstream) == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_unknown_include_values_are_400(client, auth):
    error = post(client, auth, include=["reasoning.encrypted_content", "nope"]).get_json()["error"]
    assert error["param"] == "include[1]"
    assert post(client, auth, include="reasoning.encrypted_content").get_json()["error"]["param"] == "include"


def test_output_text_logprobs_are_honoured(client, auth, upstream):
    upstream.post(URL, json=completion("Hi", choices=[{"index": 0, "finish_reason": "stop", "logprobs": LOGPROBS,
                                                       "message": {"role": "assistant", "content": "Hi"}}]))
    data = checked(post(client, auth, include=["message.output_text.logprobs"], top_logprobs=1).get_json())
    assert sent(upstream) == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],
                              "logprobs": True, "top_logprobs": 1}
    assert data.output[0].content[0].logprobs[0].model_dump() == LOGPROBS["content"][0]
    assert to_chat({"model": "m", "input": "x", "include": ["message.output_text.logprobs"]})["logprobs"] is True


def test_streamed_logprobs_are_honoured():
    with_logprobs = dict(chunk({"content": "Hi"}))
    with_logprobs["choices"][0]["logprobs"] = LOGPROBS
    events = list(EventStream({"model": "m", "include": ["message.output_text.logprobs"]}).events(
        [with_logprobs, chunk({}, "stop")]))
    check_events(events)
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"] == LOGPROBS["content"]
    assert events[-1]["response"]["output"][0]["content"][0]["logprobs"] == LOGPROBS["content"]


# -- reasoning items: the chat answer's reasoning, and its signed blocks round-tripped ---------------
BLOCKS = [{"type": "thinking", "thinking": "Let me see.", "signature": "s1"}, {"type": "redacted_thinking", "data": "r"}]


def test_reasoning_becomes_a_reasoning_item_that_goes_back_as_thinking_blocks():
    message = {"role": "assistant", "content": None, "reasoning_content": "Let me see.", "thinking_blocks": BLOCKS,
               "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}
    answer = from_completion(completion(choices=[{"index": 0, "message": message, "finish_reason": "tool_calls"}]),
                             {"model": "m", "input": "x"})
    checked(answer)
    item = answer["output"][0]
    assert item["type"] == "reasoning" and item["content"] == [{"type": "reasoning_text", "text": "Let me see."}]
    assert item["summary"] == [] and item["encrypted_content"].startswith(REASONING_PREFIX)
    replay = [{"role": "user", "content": "x"}] + answer["output"] + [
        {"type": "function_call_output", "call_id": "c1", "output": "42"}]
    chat = to_chat({"model": "m", "input": replay})
    assert chat["messages"][1] == {"role": "assistant", "content": None, "thinking_blocks": BLOCKS,
                                   "tool_calls": message["tool_calls"]}


def test_reasoning_items_from_elsewhere_are_left_out_and_broken_ones_are_400(client, auth, upstream):
    upstream.post(URL, json=completion())
    foreign = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB-openai-blob"}
    assert post(client, auth, input=[foreign, {"role": "user", "content": "Hi"}]).status_code == 200
    assert sent(upstream)["messages"] == [{"role": "user", "content": "Hi"}]
    broken = dict(foreign, encrypted_content=REASONING_PREFIX + "not base64 json")
    error = post(client, auth, input=[{"role": "user", "content": "Hi"}, broken]).get_json()["error"]
    assert error["param"] == "input[1].encrypted_content"


def test_streamed_reasoning_is_a_reasoning_item_with_its_events():
    chunks = [chunk({"role": "assistant", "reasoning_content": "Let "}), chunk({"reasoning_content": "me see."}),
              chunk({"thinking_blocks": BLOCKS[:1]}), chunk({"thinking_blocks": BLOCKS[1:]}),
              chunk({"content": "Yes."}), chunk({}, "stop"), usage_chunk()]
    events = check_events(list(EventStream({"model": "m"}).events(chunks)))
    kinds = [e["type"] for e in events]
    assert kinds[:8] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.reasoning_text.delta",
                         "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done"]
    done = events[8]
    assert done["type"] == "response.output_item.done" and done["item"]["type"] == "reasoning"
    assert decode_reasoning(done["item"]["encrypted_content"], "x") == BLOCKS
    final = checked(events[-1]["response"])
    assert [o.type for o in final.output] == ["reasoning", "message"] and final.output_text == "Yes."
