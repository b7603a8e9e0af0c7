"""POST /v1/responses: Responses API over chat, with the upstream mocked and the mock provider."""
import functools
import json

import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from deltallm import keys
from deltallm.errors import UpstreamError
from deltallm.translate.responses import to_chat
from deltallm.translate.responses_stream import EventStream
from tests import openapi
from tests.conftest import UPSTREAM
from tests.helpers import chunk, completion, sse, usage_chunk

URL = UPSTREAM + "/chat/completions"
TOOL = {"type": "function", "name": "lookup", "description": "Look a thing up",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}
STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def post(client, auth, **body):
    body.setdefault("model", "gpt-4o-mini")
    body.setdefault("input", "Hi")
    return client.post("/v1/responses", json=body, headers=auth)


def sent(upstream, index=0):
    return json.loads(upstream.calls[index].request.body)


def checked(data):
    """A Response body, validated by OpenAI's schema and by the SDK's model."""
    openapi.check("Response", data)
    return Response.model_validate(data)


@functools.lru_cache(maxsize=None)
def event_schemas():
    """Event type -> component schema name, from the ResponseStreamEvent union of the OpenAPI file."""
    schemas = json.loads(openapi.SPEC.read_text())["components"]["schemas"]
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ResponseStreamEvent"]["anyOf"]]
    return {schemas[name]["properties"]["type"]["enum"][0]: name for name in names}


def check_events(events):
    for number, event in enumerate(events):
        assert event["sequence_number"] == number
        openapi.check(event_schemas()[event["type"]], event)
        STREAM_EVENT.validate_python(event)
    return events


def stream_events(resp):
    """Decoded events of a Responses SSE body; each `event:` line must name its data's type."""
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = []
    for block in resp.data.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:]
        events.append(event)
    return check_events(events)


def tool_call(call_id, name="lookup", arguments='{"q":"x"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- plain requests ---------------------------------------------------------------------------
def test_text_input_is_translated_and_answered(client, auth, upstream):
    upstream.post(URL, json=completion("Hello!"))
    resp = post(client, auth, input="Hi", instructions="Be brief.", max_output_tokens=64,
                temperature=0.2, top_p=0.9, user="u-1", metadata={"ticket": "42"}, store=True,
                truncation="disabled", reasoning={"effort": "low"})
    assert resp.status_code == 200
    assert sent(upstream) == {
        "model": "gpt-4o-mini", "temperature": 0.2, "top_p": 0.9, "user": "u-1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 64, "reasoning_effort": "low"}  # metadata and store stay here
    data = resp.get_json()
    parsed = checked(data)
    assert parsed.output_text == "Hello!"
    assert data["id"].startswith("resp_") and data["object"] == "response"
    assert data["status"] == "completed" and data["error"] is None and data["completed_at"]
    assert data["model"] == "gpt-4o-mini-2024-07-18"
    message = data["output"][0]
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]
    assert data["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                             "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": 7}
    echoed = {k: data[k] for k in ("instructions", "max_output_tokens", "temperature", "top_p", "user",
                                   "metadata", "store", "truncation", "previous_response_id")}
    assert echoed == {"instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.2, "top_p": 0.9,
                      "user": "u-1", "metadata": {"ticket": "42"}, "store": False, "truncation": "disabled",
                      "previous_response_id": None}
    assert data["reasoning"] == {"effort": "low", "summary": None}
    assert data["text"] == {"format": {"type": "text"}} and data["tools"] == [] and data["tool_choice"] == "auto"
    assert resp.headers["x-deltallm-deployment"].startswith("dep_")


def test_route_without_v1_prefix_and_detailed_usage(client, auth, upstream):
    usage = {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29,
             "prompt_tokens_details": {"cached_tokens": 16}, "completion_tokens_details": {"reasoning_tokens": 4}}
    upstream.post(URL, json=completion(usage=usage))
    data = client.post("/responses", json={"model": "gpt-4o-mini", "input": "Hi"}, headers=auth).get_json()
    assert data["usage"]["input_tokens_details"]["cached_tokens"] == 16
    assert data["usage"]["output_tokens_details"]["reasoning_tokens"] == 4
    assert data["usage"]["total_tokens"] == 29
    checked(data)


def test_input_items_become_chat_messages(client, auth, upstream):
    upstream.post(URL, json=completion("Done."))
    items = [
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "https://img.test/cat.png", "detail": "low"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "content": [
            {"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "lookup", "arguments": '{"q":"a"}',
         "status": "completed"},
        {"type": "function_call", "call_id": "call_b", "name": "lookup", "arguments": '{"q":"b"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "A"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "B"}]},
        {"type": "function_call", "call_id": "call_c", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_c", "output": "C"},
        {"role": "user", "content": "Thanks"},
    ]
    assert post(client, auth, input=items, instructions="Be kind.", tools=[TOOL]).status_code == 200
    assert sent(upstream)["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "https://img.test/cat.png",
                                                                         "detail": "low"}}]},
        {"role": "assistant", "content": "Let me look.",
         "tool_calls": [tool_call("call_a", arguments='{"q":"a"}'), tool_call("call_b", arguments='{"q":"b"}')]},
        {"role": "tool", "tool_call_id": "call_a", "content": "A"},
        {"role": "tool", "tool_call_id": "call_b", "content": "B"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call("call_c", arguments="{}")]},
        {"role": "tool", "tool_call_id": "call_c", "content": "C"},
        {"role": "user", "content": "Thanks"},
    ]


def test_function_tools_and_tool_calls(client, auth, upstream):
    body = completion(None, finish="tool_calls")
    body["choices"][0]["message"]["tool_calls"] = [tool_call("call_1"), tool_call("call_2", arguments="{}")]
    upstream.post(URL, json=body)
    strict = dict(TOOL, name="strict_one", strict=True)
    resp = post(client, auth, tools=[TOOL, strict], tool_choice={"type": "function", "name": "lookup"},
                parallel_tool_calls=False)
    upstream_body = sent(upstream)
    assert upstream_body["tools"] == [
        {"type": "function", "function": {k: TOOL[k] for k in ("name", "description", "parameters")}},
        {"type": "function", "function": {**{k: TOOL[k] for k in ("description", "parameters")},
                                          "name": "strict_one", "strict": True}}]
    assert upstream_body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert upstream_body["parallel_tool_calls"] is False
    data = resp.get_json()
    checked(data)
    assert [item["type"] for item in data["output"]] == ["function_call", "function_call"]
    first = data["output"][0]
    assert first["id"].startswith("fc_") and first["status"] == "completed"
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_1", "lookup", '{"q":"x"}')
    assert data["output"][1]["call_id"] == "call_2"
    assert data["tools"] == [dict(TOOL, strict=None), dict(strict)]
    assert data["tool_choice"] == {"type": "function", "name": "lookup"}
    assert data["parallel_tool_calls"] is False


def test_tool_settings_without_tools_are_not_sent(client, auth, upstream):
    upstream.post(URL, json=completion())
    assert post(client, auth, tool_choice="auto", parallel_tool_calls=True, tools=[]).status_code == 200
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(sent(upstream))


@pytest.mark.parametrize("fmt,expected", [
    ({"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True,
      "description": "The answer"},
     {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True,
                                             "description": "The answer"}}),
    ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "text"}, None),
])
def test_text_format_becomes_response_format(client, auth, upstream, fmt, expected):
    upstream.post(URL, json=completion('{"a": 1}'))
    data = post(client, auth, text={"format": fmt, "verbosity": "low"}).get_json()
    assert sent(upstream).get("response_format") == expected
    assert sent(upstream)["verbosity"] == "low"
    assert data["text"] == {"format": fmt, "verbosity": "low"}
    checked(data)


@pytest.mark.parametrize("finish,status,reason", [
    ("length", "incomplete", "max_output_tokens"), ("content_filter", "incomplete", "content_filter"),
    ("stop", "completed", None), ("tool_calls", "completed", None)])
def test_finish_reason_sets_status(client, auth, upstream, finish, status, reason):
    upstream.post(URL, json=completion("Partial", finish=finish))
    data = post(client, auth).get_json()
    checked(data)
    assert data["status"] == status
    assert data["incomplete_details"] == ({"reason": reason} if reason else None)
    assert data["output"][0]["status"] == ("incomplete" if reason else "completed")
    assert (data["completed_at"] is None) == (reason is not None)


def test_refusal_is_a_refusal_part(client, auth, upstream):
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    upstream.post(URL, json=body)
    data = post(client, auth).get_json()
    checked(data)
    assert data["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


# -- what is refused --------------------------------------------------------------------------
def part_item(part):
    return [{"role": "user", "content": [part]}]


UNSUPPORTED = [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"conversation": "conv_123"}, "conversation"),
    ({"background": True}, "background"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"truncation": "auto"}, "truncation"),
    ({"tools": [TOOL, {"type": "web_search_preview"}]}, "tools[1].type"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools[0].type"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools[0].type"),
    ({"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
    ({"tools": [{"type": "image_generation"}]}, "tools[0].type"),
    ({"tools": [{"type": "local_shell"}]}, "tools[0].type"),
    ({"tools": [{"type": "custom", "name": "x"}]}, "tools[0].type"),
    ({"tools": [{"type": "mcp", "server_label": "docs", "server_url": "https://mcp.test"}]},
     "tools[0].server_url"),
    ({"tools": [{"type": "mcp", "server_label": "docs", "require_approval": "always"}]},
     "tools[0].require_approval"),
    ({"tools": [dict(TOOL, defer_loading=True)]}, "tools[0].defer_loading"),
    ({"tools": [TOOL], "tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
    ({"input": part_item({"type": "input_file", "file_id": "file_1"})}, "input[0].content[0].type"),
    ({"input": part_item({"type": "input_audio", "input_audio": {}})}, "input[0].content[0].type"),
    ({"input": part_item({"type": "input_image", "file_id": "file_1"})}, "input[0].content[0].file_id"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": "Hi"}, {"type": "web_search_call", "id": "ws_1"}]}, "input[1].type"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"content": "no role, no type"}]}, "input[0].type"),
    ({"reasoning": {"effort": "low", "mode": "x"}}, "reasoning.mode"),
    # chat completions return no reasoning summary: asking for one must not be silently ignored
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
    ({"reasoning": {"generate_summary": "concise"}}, "reasoning.generate_summary"),
    # "off" values only with their own JSON type (0 == False in Python)
    ({"background": 0}, "background"),
]


@pytest.mark.parametrize("fields,param", UNSUPPORTED)
def test_unsupported_features_are_refused_by_name(client, auth, upstream, fields, param):
    resp = post(client, auth, **fields)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["code"] in ("unsupported_parameter", "unsupported_value")
    openapi.check("ErrorResponse", resp.get_json())
    assert len(upstream.calls) == 0


def test_mcp_tools_name_only_servers_the_key_may_see(client, auth, upstream):
    resp = post(client, auth, tools=[{"type": "mcp", "server_label": "docs"}])
    assert resp.status_code == 404 and resp.get_json()["error"]["param"] == "tools[0].server"
    assert len(upstream.calls) == 0


@pytest.mark.parametrize("fields", [
    {"previous_response_id": None, "conversation": None, "prompt": None, "background": False, "include": [],
     "top_logprobs": 0, "truncation": "disabled", "store": False},
    {"background": None, "include": None, "truncation": None, "store": True, "stream_options": None},
])
def test_off_values_of_unsupported_features_are_accepted(client, auth, upstream, fields):
    upstream.post(URL, json=completion())
    assert post(client, auth, **fields).status_code == 200
    assert set(sent(upstream)) == {"model", "messages"}


@pytest.mark.parametrize("name", ["n", "messages", "stop", "mock_response"])
def test_unknown_parameters_are_refused(client, auth, upstream, name):
    resp = post(client, auth, **{name: 2})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == {"message": f"Unknown parameter: '{name}'.", "type": "invalid_request_error",
                                        "param": name, "code": "unknown_parameter"}


@pytest.mark.parametrize("fields,param", [
    ({"input": None}, "input"),
    ({"model": ""}, "model"),
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"temperature": "hot"}, "temperature"),
    ({"max_output_tokens": 8}, "max_output_tokens"),
    ({"max_output_tokens": True}, "max_output_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}, "input[0].content[0].type"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
     "input[0].content[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
    ({"input": [{"role": "user", "content": None}]}, "input[0].content"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
    ({"tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
    ({"tools": [dict(TOOL, strict="yes")]}, "tools[0].strict"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"metadata": {"a": 1}}, "metadata.a"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"colour": "blue"}}, "text.colour"),
    ({"truncation": "sometimes"}, "truncation"),
    ({"stream_options": {"include_obfuscation": "no"}}, "stream_options.include_obfuscation"),
])
def test_invalid_values_name_the_field(client, auth, upstream, fields, param):
    resp = post(client, auth, **fields)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["param"] == param
    assert resp.get_json()["error"]["type"] == "invalid_request_error"
    assert len(upstream.calls) == 0


def test_model_access_and_unknown_model(client, auth, upstream):
    limited = {"Authorization": f"Bearer {keys.create_key(name='only-mocky', models=['mocky'])[1]}"}
    assert post(client, limited).status_code == 403
    assert post(client, limited, model="mocky").status_code == 200
    assert post(client, auth, model="no-such-model").status_code == 404
    assert len(upstream.calls) == 0


@pytest.mark.parametrize("status,expected", [(400, 400), (500, 502), (429, 429)])
def test_upstream_errors_are_mapped(client, auth, upstream, status, expected):
    upstream.post(URL, status=status, json={"error": {"message": "nope", "type": "invalid_request_error",
                                                      "param": "temperature", "code": None}})
    resp = post(client, auth)
    assert resp.status_code == expected
    assert resp.get_json()["error"]["message"].endswith("nope")


# -- streaming --------------------------------------------------------------------------------
def test_stream_text_events_in_order(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": ""}, usage=True), chunk({"content": "Hel"}, usage=True),
               chunk({"content": "lo"}, usage=True), chunk({}, "stop", usage=True), usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    resp = post(client, auth, stream=True, instructions="Be brief.")
    assert b"[DONE]" not in resp.data
    events = stream_events(resp)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello"
    assert events[6]["text"] == "Hello"
    item_id = events[2]["item"]["id"]
    assert all(e["item_id"] == item_id for e in events[3:8])
    final = events[-1]["response"]
    assert final["id"] == created["id"] and final["status"] == "completed"
    assert checked(final).output_text == "Hello"
    assert final["usage"]["total_tokens"] == 7 and final["model"] == "gpt-4o-mini-2024-07-18"
    assert final["instructions"] == "Be brief."
    upstream_body = sent(upstream)
    assert upstream_body["stream"] is True and upstream_body["stream_options"] == {"include_usage": True}


def test_stream_tool_calls(client, auth, upstream):
    def call(index, **fields):
        return chunk({"tool_calls": [dict(fields, index=index)]})
    body = sse(chunk({"role": "assistant", "content": "Checking."}),
               call(0, id="call_1", type="function", function={"name": "lookup", "arguments": ""}),
               call(0, function={"arguments": '{"q":'}), call(0, function={"arguments": '"x"}'}),
               call(1, id="call_2", type="function", function={"name": "lookup", "arguments": "{}"}),
               chunk({}, "tool_calls"), usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    events = stream_events(post(client, auth, stream=True, tools=[TOOL]))
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added = events[8]["item"]
    assert added["type"] == "function_call" and added["arguments"] == "" and added["status"] == "in_progress"
    assert events[11]["arguments"] == '{"q":"x"}' and events[11]["name"] == "lookup"
    output = events[-1]["response"]["output"]
    assert [(o["type"], o.get("call_id"), o["status"]) for o in output] == [
        ("message", None, "completed"), ("function_call", "call_1", "completed"),
        ("function_call", "call_2", "completed")]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2]
    checked(events[-1]["response"])


def test_stream_cut_by_length_is_incomplete(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": "Partial"}), chunk({}, "length"), usage_chunk())
    upstream.post(URL, body=body, content_type="text/event-stream")
    events = stream_events(post(client, auth, stream=True, max_output_tokens=16))
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"


def test_stream_failure_mid_way_ends_with_error_and_failed(client, auth, upstream):
    body = sse(chunk({"role": "assistant", "content": "Hi"}),
               {"error": {"message": "model crashed", "type": "server_error"}}, done=False)
    upstream.post(URL, body=body, content_type="text/event-stream")
    events = stream_events(post(client, auth, stream=True))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    error = events[-2]
    assert error["code"] == "upstream_error" and "model crashed" in error["message"] and error["param"] is None
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": error["message"]}
    assert failed["output"][0]["content"][0]["text"] == "Hi" and failed["output"][0]["status"] == "incomplete"
    checked(failed)


def test_stream_failure_before_first_byte_is_retried_or_a_json_error(client, auth, upstream):
    upstream.post(URL, status=503, json={"error": {"message": "busy"}})
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop")),
                  content_type="text/event-stream")
    assert stream_events(post(client, auth, stream=True))[-1]["type"] == "response.completed"
    assert len(upstream.calls) == 2
    upstream.replace("POST", URL, status=500, json={"error": {"message": "down"}})
    resp = post(client, auth, stream=True)
    assert resp.status_code == 502 and resp.get_json()["error"]["type"] == "upstream_error"


# -- the mock provider ------------------------------------------------------------------------
def test_mock_provider_plain_and_streamed(client, auth):
    data = post(client, auth, model="mocky", input="ping").get_json()
    assert checked(data).output_text == "This is a mock response to: ping"
    assert data["model"] == "mock-1" and data["usage"]["output_tokens"] == 7
    events = stream_events(post(client, auth, model="mocky", input="ping", stream=True))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "This is a mock response to: ping"
    assert events[-1]["response"]["usage"]["output_tokens"] == 7


def test_mock_provider_max_output_tokens(client, auth):
    data = post(client, auth, model="mocky", input=" ".join(["w"] * 30), max_output_tokens=16).get_json()
    assert data["status"] == "incomplete" and len(checked(data).output_text.split()) == 16


# -- the stream translator on its own ---------------------------------------------------------
def translate(chunks, **req):
    return check_events(list(EventStream({"model": "m", "input": "x", **req}, "req_1").events(chunks)))


def delta(**fields):
    return {"model": "up", "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def test_translator_refusal_and_new_call_ids_on_one_index():
    events = translate([delta(refusal="No."), delta(tool_calls=[{"index": 0, "id": "a", "function": {
        "name": "f", "arguments": "{}"}}]), delta(tool_calls=[{"index": 0, "id": "b", "function": {"name": "g"}}]),
        {"model": "up", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}])
    kinds = [e["type"] for e in events]
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    output = events[-1]["response"]["output"]
    assert output[0]["content"] == [{"type": "refusal", "refusal": "No."}]
    assert [(o.get("call_id"), o.get("name")) for o in output[1:]] == [("a", "f"), ("b", "g")]
    assert events[-1]["response"]["usage"] is None and events[-1]["response"]["model"] == "up"


def test_translator_reports_unexpected_failures_without_details():
    def broken():
        yield delta(content="Hi")
        raise RuntimeError("secret internals")
    events = translate(broken())
    assert events[-2]["code"] == "server_error" and "req_1" in events[-2]["message"]
    assert "secret" not in events[-2]["message"]
    assert events[-1]["response"]["status"] == "failed"


def test_translator_rate_limit_failure_code():
    def limited():
        raise UpstreamError("slow down", type="rate_limit_error", code="upstream_rate_limited")
        yield  # pragma: no cover - makes this a generator
    events = translate(limited())
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_to_chat_is_minimal():
    assert to_chat({"model": "m", "input": "x", "metadata": {"a": "b"}, "store": True}) == {
        "model": "m", "messages": [{"role": "user", "content": "x"}]}
