"""Anthropic adapter: exact upstream requests, translated responses and streams, error mapping."""
import orjson
import pytest
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import (InvalidRequest, UpstreamAuthFailed, UpstreamError, UpstreamRateLimited,
                             UpstreamRejected)
from deltallm.providers import anthropic, anthropic_request
from deltallm.providers.base import Call
from deltallm.router.deployment import Deployment

URL = "https://api.anthropic.test/v1/messages"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def deployment():
    return Deployment("claude", {"model": "anthropic/claude-3-5-haiku-latest",
                                 "api_key": "upstream-secret", "api_base": "https://api.anthropic.test/v1"})


@pytest.fixture
def call():
    return Call("req-1")


def message(content, stop_reason="end_turn", usage=None):
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 3}}


def sse(*events):
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def start_event(input_tokens=12):
    return {"type": "message_start", "message": dict(message([], None), usage={
        "input_tokens": input_tokens, "cache_read_input_tokens": 4, "output_tokens": 1})}


def block_start(index, block):
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index, d):
    return {"type": "content_block_delta", "index": index, "delta": d}


def end_events(stop_reason, output_tokens=7):
    return ({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens}}, {"type": "message_stop"})


def sent():
    return orjson.loads(responses.calls[-1].request.body)


def completion(d):
    return ChatCompletion.model_validate(d)


def chunks_of(iterator):
    out = list(iterator)
    for chunk in out:
        ChatCompletionChunk.model_validate(chunk)
    return out


# -- requests ---------------------------------------------------------------------------------
@responses.activate
def test_chat_sends_exact_request_and_translates_answer(deployment, call):
    responses.add(responses.POST, URL, json=message([{"type": "text", "text": "Hello!"}]))
    body = {"model": "claude", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "hi"}],
        "stop": "END", "temperature": 0.2, "top_p": 0.9, "top_k": 5, "user": "u-42", "seed": 7,
        "frequency_penalty": 0.5}
    out = deployment.adapter.chat(call, body)
    request = responses.calls[0].request
    assert request.url == URL
    assert request.headers["x-api-key"] == "upstream-secret"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in {k.lower() for k in request.headers}
    assert sent() == {"model": "claude-3-5-haiku-latest", "max_tokens": 4096,
                      "messages": [{"role": "user", "content": "hi"}],
                      "system": "Be brief.\n\nAnswer in English.", "stop_sequences": ["END"],
                      "temperature": 0.2, "top_k": 5, "metadata": {"user_id": "u-42"}}  # top_p: see item 4
    completion(out)
    assert out["id"] == "chatcmpl-msg_01"
    assert out["model"] == "claude-3-5-haiku-20241022"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "Hello!", "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    assert call.upstream_s > 0


@pytest.mark.parametrize("fields, params, expected", [
    ({"max_tokens": 50}, {}, 50),
    ({"max_completion_tokens": 60}, {"max_tokens": 900}, 60),
    ({}, {"max_tokens": 900}, 900),
    ({}, {}, 4096),
])
def test_max_tokens_always_sent(fields, params, expected):
    dep = Deployment("claude", dict({"model": "anthropic/claude-x"}, **params))
    assert anthropic_request.to_request(dep, dict({"messages": USER}, **fields))["max_tokens"] == expected


def test_stop_list_and_n_above_one(deployment):
    payload = anthropic_request.to_request(deployment, {"messages": USER, "stop": ["a", "b"]})
    assert payload["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in anthropic_request.to_request(deployment, {"messages": USER, "stop": None})
    assert anthropic_request.to_request(deployment, {"messages": USER, "n": 1})["messages"] == [
        {"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequest) as err:
        anthropic_request.to_request(deployment, {"messages": USER, "n": 2})
    assert err.value.param == "n"


def test_images_become_base64_and_url_sources(deployment):
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]}]}
    assert anthropic_request.to_request(deployment, body)["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}]


@pytest.mark.parametrize("url", ["ftp://example.com/cat.jpg", "data:image/png,notbase64"])
def test_unusable_image_url_names_the_param(deployment, url):
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(InvalidRequest) as err:
        anthropic_request.to_request(deployment, body)
    assert err.value.param == "messages[0].content[0].image_url.url"


def test_tool_history_merges_consecutive_results_and_turns(deployment):
    body = {"messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "user", "content": "in celsius"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_a", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "toolu_b", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "thanks, summarise"}]}
    assert anthropic_request.to_request(deployment, body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"},
                                     {"type": "text", "text": "in celsius"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "21C"},
            {"type": "text", "text": "thanks, summarise"}]}]


def test_blank_text_is_left_out(deployment):
    """Anthropic answers 400 "text content blocks must contain non-whitespace text"."""
    body = {"messages": [
        {"role": "system", "content": "  "},
        {"role": "user", "content": [{"type": "text", "text": " "}, {"type": "text", "text": "time?"}]},
        {"role": "assistant", "content": "\n\n", "tool_calls": [
            {"id": "toolu_a", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "\n"}]}
    payload = anthropic_request.to_request(deployment, body)
    assert "system" not in payload
    assert payload["messages"] == [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_a", "name": "clock", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a"}]}]


def test_bad_tool_call_arguments_name_the_param(deployment):
    body = {"messages": USER + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}]}
    with pytest.raises(InvalidRequest) as err:
        anthropic_request.to_request(deployment, body)
    assert err.value.param == "messages[1].tool_calls[0].function.arguments"


WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.mark.parametrize("choice, parallel, expected", [
    (None, None, None),
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "weather"}}, None, {"type": "tool", "name": "weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tools_and_tool_choice(deployment, choice, parallel, expected):
    body = {"messages": USER, "tools": [WEATHER, {"type": "function", "function": {"name": "noop"}}]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    payload = anthropic_request.to_request(deployment, body)
    assert payload["tools"] == [
        {"name": "weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}}]
    assert payload.get("tool_choice") == expected


SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}}}


@responses.activate
def test_json_schema_is_a_forced_tool_answered_as_content(deployment, call):
    responses.add(responses.POST, URL, json=message(
        [{"type": "tool_use", "id": "toolu_1", "name": "person", "input": {"name": "Ada"}}], "tool_use"))
    out = deployment.adapter.chat(call, {"messages": USER, "response_format": SCHEMA})
    payload = sent()
    assert payload["tools"] == [{"name": "person", "description": anthropic_request.JSON_TOOL_DESCRIPTION,
                                 "input_schema": SCHEMA["json_schema"]["schema"]}]
    assert payload["tool_choice"] == {"type": "tool", "name": "person"}
    completion(out)
    assert out["choices"][0]["message"] == {"role": "assistant", "content": '{"name":"Ada"}', "refusal": None}
    assert out["choices"][0]["finish_reason"] == "stop"


def test_json_schema_with_client_tools_lets_the_model_pick(deployment):
    payload = anthropic_request.to_request(deployment, {"messages": USER, "tools": [WEATHER],
                                                "response_format": SCHEMA})
    assert [t["name"] for t in payload["tools"]] == ["weather", "person"]
    assert payload["tool_choice"] == {"type": "any"}
    with pytest.raises(InvalidRequest) as err:
        anthropic_request.to_request(deployment, {"messages": USER, "response_format": dict(
            SCHEMA, json_schema=dict(SCHEMA["json_schema"], name="weather")), "tools": [WEATHER]})
    assert err.value.param == "response_format.json_schema.name"
    payload = anthropic_request.to_request(deployment, {"messages": USER, "tools": [WEATHER], "tool_choice": "none",
                                                "response_format": SCHEMA})
    assert payload["tool_choice"] == {"type": "tool", "name": "person"}


def test_pdf_file_part_and_unsupported_parts(deployment):
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    payload = anthropic_request.to_request(deployment, {"messages": [{"role": "user", "content": [pdf]}]})
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]}]
    for part, param in [({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[1].file"),
                        ({"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                         "messages[0].content[1].type")]:
        with pytest.raises(InvalidRequest) as err:
            anthropic_request.to_request(deployment, {"messages": [{"role": "user", "content": [pdf, part]}]})
        assert err.value.param == param


def test_json_object_adds_a_system_instruction(deployment):
    payload = anthropic_request.to_request(deployment, {"messages": [{"role": "system", "content": "S"}] + USER,
                                                "response_format": {"type": "json_object"}})
    assert payload["system"] == "S\n\n" + anthropic_request.JSON_OBJECT_INSTRUCTION
    assert "tools" not in payload


# -- responses --------------------------------------------------------------------------------
def test_tool_use_response_and_cache_usage(deployment):
    data = message([{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}],
                   "tool_use", {"input_tokens": 5, "cache_creation_input_tokens": 20,
                                "cache_read_input_tokens": 100, "output_tokens": 9})
    out = anthropic.from_response(deployment, data)
    completion(out)
    assert out["choices"][0]["message"]["content"] == "Checking."
    assert out["choices"][0]["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city":"Paris"}'}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {"prompt_tokens": 125, "completion_tokens": 9, "total_tokens": 134,
                            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 20}}


@pytest.mark.parametrize("stop_reason, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("refusal", "content_filter"), ("pause_turn", "stop")])
def test_stop_reason_mapping(deployment, stop_reason, finish):
    out = anthropic.from_response(deployment, message([{"type": "text", "text": "x"}], stop_reason))
    completion(out)
    assert out["choices"][0]["finish_reason"] == finish


# -- streaming --------------------------------------------------------------------------------
@responses.activate
def test_stream_text(deployment, call):
    responses.add(responses.POST, URL, content_type="text/event-stream", body=sse(
        start_event(), block_start(0, {"type": "text", "text": ""}), {"type": "ping"},
        delta(0, {"type": "text_delta", "text": "Hel"}), delta(0, {"type": "text_delta", "text": "lo"}),
        {"type": "content_block_stop", "index": 0}, *end_events("max_tokens")))
    chunks = chunks_of(deployment.adapter.chat_stream(call, {"messages": USER, "stream": True,
                                                             "stream_options": {"include_usage": True}}))
    request = responses.calls[0].request
    assert sent()["stream"] is True and "stream_options" not in sent()
    assert request.headers["x-api-key"] == "upstream-secret"
    assert request.headers["accept"] == "text/event-stream"
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "length"]
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_01"}
    assert {c["model"] for c in chunks} == {"claude-3-5-haiku-20241022"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 16, "completion_tokens": 7, "total_tokens": 23,
                                   "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0}}


def test_stream_tool_calls_get_their_own_indexes(deployment):
    translator = anthropic.StreamTranslator(deployment)
    events = [start_event(), block_start(0, {"type": "text", "text": ""}),
              delta(0, {"type": "text_delta", "text": "Let me check."}),
              block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
              delta(1, {"type": "input_json_delta", "partial_json": ""}),
              delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
              delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
              block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "clock", "input": {}}),
              delta(2, {"type": "input_json_delta", "partial_json": "{}"}), *end_events("tool_use")]
    chunks = [c for e in events for c in translator.feed(e["type"], e)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1:] == [
        {"content": "Let me check."},
        {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                         "function": {"name": "weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                         "function": {"name": "clock", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 7


def test_stream_tool_call_without_input_gets_empty_object_arguments(deployment):
    translator = anthropic.StreamTranslator(deployment, json_tool="person")
    stop = [{"type": "content_block_stop", "index": i} for i in range(4)]
    events = [start_event(), block_start(0, {"type": "text", "text": ""}),
              delta(0, {"type": "text_delta", "text": "Hi."}), stop[0],
              block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "clock", "input": {}}),
              delta(1, {"type": "input_json_delta", "partial_json": ""}), stop[1],
              block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}}),
              delta(2, {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'}), stop[2],
              block_start(3, {"type": "tool_use", "id": "toolu_c", "name": "person", "input": {}}), stop[3],
              *end_events("tool_use")]
    chunks = [c for e in events for c in translator.feed(e["type"], e)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    arguments = {}
    for d in deltas:
        for t in d.get("tool_calls") or []:
            arguments[t["index"]] = arguments.get(t["index"], "") + t["function"]["arguments"]
    assert arguments == {0: "{}", 1: '{"city": "Oslo"}'}  # as the non-streamed answer reads
    assert "".join(d.get("content") or "" for d in deltas) == "Hi.{}"


def test_stream_json_schema_tool_input_becomes_content(deployment):
    translator = anthropic.StreamTranslator(deployment, json_tool="person")
    events = [start_event(),
              block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "person", "input": {}}),
              delta(0, {"type": "input_json_delta", "partial_json": '{"name":'}),
              delta(0, {"type": "input_json_delta", "partial_json": '"Ada"}'}), *end_events("tool_use")]
    chunks = [c for e in events for c in translator.feed(e["type"], e)]
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:3]] == ['{"name":', '"Ada"}']
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@responses.activate
def test_stream_error_event_first_is_raised_before_returning(deployment, call):
    responses.add(responses.POST, URL, content_type="text/event-stream", body=sse(OVERLOADED))
    with pytest.raises(UpstreamError) as err:
        deployment.adapter.chat_stream(call, {"messages": USER})
    assert err.value.retryable and "Overloaded" in err.value.message


@responses.activate
def test_stream_error_event_mid_stream_raises_while_iterating(deployment, call):
    responses.add(responses.POST, URL, content_type="text/event-stream", body=sse(
        start_event(), block_start(0, {"type": "text", "text": ""}),
        delta(0, {"type": "text_delta", "text": "Hi"}), OVERLOADED))
    stream = deployment.adapter.chat_stream(call, {"messages": USER})
    assert next(stream)["choices"][0]["delta"]["role"] == "assistant"
    assert next(stream)["choices"][0]["delta"] == {"content": "Hi"}
    with pytest.raises(UpstreamError):
        next(stream)


@responses.activate
def test_stream_cut_before_message_stop_is_an_error(deployment, call):
    responses.add(responses.POST, URL, content_type="text/event-stream", body=sse(
        start_event(), block_start(0, {"type": "text", "text": ""})))
    with pytest.raises(UpstreamError, match="message_stop"):
        list(deployment.adapter.chat_stream(call, {"messages": USER}))


# -- errors -----------------------------------------------------------------------------------
def error_body(etype, message):
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}


@responses.activate
@pytest.mark.parametrize("status, etype, cls, gateway_status", [
    (529, "overloaded_error", UpstreamError, 502),
    (500, "api_error", UpstreamError, 502),
    (400, "invalid_request_error", UpstreamRejected, 400),
    (401, "authentication_error", UpstreamAuthFailed, 502),
    (403, "permission_error", UpstreamAuthFailed, 502),
    (429, "rate_limit_error", UpstreamRateLimited, 429),
])
def test_http_errors_are_mapped(deployment, call, status, etype, cls, gateway_status):
    responses.add(responses.POST, URL, status=status, json=error_body(etype, "upstream says no"),
                  headers={"retry-after": "17"})
    with pytest.raises(cls) as err:
        deployment.adapter.chat(call, {"messages": USER})
    assert type(err.value) is cls
    assert err.value.status == gateway_status
    assert "upstream says no" in err.value.upstream_message  # for the log
    # a 401/403 message may quote our provider key: never relayed
    assert ("upstream says no" in err.value.message) is (cls is not UpstreamAuthFailed)
    assert err.value.retryable == (status in (429, 500, 529))
    if status == 400:
        assert err.value.message == "upstream says no" and err.value.type == "invalid_request_error"
    if status == 429:
        assert err.value.headers == {"Retry-After": "17"}


# -- against the fake upstream (tests/fakes/anthropic.py) -------------------------------------
@pytest.fixture(scope="module")
def fake_base(upstream_url):
    return upstream_url + "/v1"


def fake_deployment(base, key="upstream-secret"):
    return Deployment("claude", {"model": "anthropic/claude-3-5-haiku-latest", "api_key": key,
                                 "api_base": base})


def test_fake_round_trip_text_and_stream(fake_base, call):
    dep = fake_deployment(fake_base)
    hello = [{"role": "user", "content": "hello there"}]
    out = dep.adapter.chat(call, {"messages": [{"role": "system", "content": "x"}] + hello})
    completion(out)
    assert out["choices"][0]["message"]["content"] == "echo: hello there"
    assert out["model"] == "claude-3-5-haiku-20241022"
    chunks = chunks_of(dep.adapter.chat_stream(call, {"messages": hello}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: hello there"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_fake_round_trip_tool_call_stream(fake_base, call):
    adapter = fake_deployment(fake_base).adapter
    chunks = chunks_of(adapter.chat_stream(call, {"messages": USER, "tools": [WEATHER]}))
    calls = [t for c in chunks if c["choices"] for t in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "weather"
    assert orjson.loads("".join(t["function"]["arguments"] for t in calls)) == {"q": "echo: hi"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_fake_round_trip_keeps_no_blank_text(fake_base, call):
    adapter = fake_deployment(fake_base).adapter
    history = USER + [{"role": "assistant", "content": "\n\n", "tool_calls": [
        {"id": "toolu_a", "type": "function", "function": {"name": "clock", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "toolu_a", "content": " "}, {"role": "user", "content": "and now?"}]
    tools = [{"type": "function", "function": {"name": "clock"}}]
    out = adapter.chat(call, {"messages": history, "tools": tools, "tool_choice": "none"})
    assert out["choices"][0]["message"]["content"] == "echo: and now?"


def test_fake_round_trip_json_schema(fake_base, call):
    out = fake_deployment(fake_base).adapter.chat(call, {"messages": USER, "response_format": dict(
        SCHEMA, json_schema={"name": "query", "schema": {"type": "object"}})})
    completion(out)
    assert out["choices"][0]["message"]["content"] == '{"q":"echo: hi"}'
    assert out["choices"][0]["finish_reason"] == "stop"


def test_fake_errors(fake_base, call):
    with pytest.raises(UpstreamAuthFailed):
        fake_deployment(fake_base, "wrong").adapter.chat(call, {"messages": USER})
    with pytest.raises(UpstreamError) as err:
        fake_deployment(fake_base).adapter.chat(
            call, {"messages": [{"role": "user", "content": "[[status:529]]"}]})
    assert err.value.retryable and "Overloaded" in err.value.message
