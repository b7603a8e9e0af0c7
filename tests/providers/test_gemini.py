"""Gemini adapter: exact upstream requests, translated responses and streams, error mapping."""
import re

import orjson
import pytest
import requests
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import (InvalidRequest, UpstreamAuthFailed, UpstreamError, UpstreamRateLimited,
                             UpstreamRejected, UpstreamTimeout)
from deltallm.providers import gemini, gemini_request
from deltallm.providers.base import Call
from deltallm.router.deployment import Deployment
from tests import openapi

BASE = "https://gemini.test/v1beta"
URL = BASE + "/models/gemini-2.0-flash:generateContent"
STREAM_URL = BASE + "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}
WEATHER_DECL = {"name": "weather", "description": "Weather for a city",
                "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                               "required": ["city"]}}


@pytest.fixture
def deployment():
    return Deployment("gem", {"model": "gemini/gemini-2.0-flash", "api_key": "upstream-secret",
                              "api_base": BASE})


@pytest.fixture
def call():
    return Call("req-1")


def answer(parts, finish="STOP", usage=None, **extra):
    body = {"candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": 0}],
            "usageMetadata": usage or {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
            "modelVersion": "gemini-2.0-flash-001", "responseId": "resp-1"}
    body.update(extra)
    return body


def sse(*records):
    """A body framed the way Google frames `alt=sse` (CRLF line ends, no [DONE])."""
    return b"".join(b"data: " + orjson.dumps(r) + b"\r\n\r\n" for r in records)


def sent():
    return orjson.loads(responses.calls[-1].request.body)


def completion(d):
    ChatCompletion.model_validate(d)
    openapi.check("CreateChatCompletionResponse", d)
    return d


def chunks_of(iterator):
    out = list(iterator)
    for chunk in out:
        ChatCompletionChunk.model_validate(chunk)
        openapi.check("CreateChatCompletionStreamResponse", chunk)
    return out


def deltas(chunks):
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


# -- requests ---------------------------------------------------------------------------------
@responses.activate
def test_chat_sends_exact_request_and_translates_answer(deployment, call):
    responses.add(responses.POST, URL, json=answer([{"text": "Hel"}, {"text": "lo!"}]))
    body = {"model": "gem", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
        {"role": "user", "content": "hi"}, {"role": "user", "content": [{"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "again"}],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "stop": "END", "n": 1, "seed": 7,
        "presence_penalty": 0.5, "frequency_penalty": 0.25, "user": "u-1", "stream": False,
        "parallel_tool_calls": True, "logit_bias": {"1": 2}}
    out = completion(deployment.adapter.chat(call, body))
    request = responses.calls[0].request
    assert request.url == URL
    assert request.headers["x-goog-api-key"] == "upstream-secret"
    assert "authorization" not in {k.lower() for k in request.headers}
    assert "key=" not in request.url
    assert sent() == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}, {"text": "there"}]},
                     {"role": "model", "parts": [{"text": "Hello."}]},
                     {"role": "user", "parts": [{"text": "again"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "No emoji."}]},
        "generationConfig": {"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 50, "stopSequences": ["END"],
                             "candidateCount": 1, "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 0.25}}
    assert out["id"] == "chatcmpl-resp-1" and out["object"] == "chat.completion"
    assert out["model"] == "gemini-2.0-flash-001"
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                               "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


@pytest.mark.parametrize("fields, expected", [
    ({"max_completion_tokens": 9, "max_tokens": 50}, {"maxOutputTokens": 9}),
    ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
    ({"n": 3, "temperature": 0}, {"candidateCount": 3, "temperature": 0}),
    ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
    ({"response_format": {"type": "text"}}, None),
])
def test_generation_config(deployment, fields, expected):
    assert gemini.to_request(deployment, dict(fields, messages=USER)).get("generationConfig") == expected


def test_client_key_never_reaches_gemini_and_api_base_defaults():
    dep = Deployment("gem", {"model": "gemini/gemini-1.5-pro", "api_key": "k"})
    assert dep.adapter.api_base == "https://generativelanguage.googleapis.com/v1beta"
    assert dep.adapter.headers == {"Content-Type": "application/json", "x-goog-api-key": "k", "User-Agent": "deltallm/0.1"}
    tuned = Deployment("t", {"model": "gemini/tunedModels/my-model", "api_key": "k"})
    assert tuned.adapter.resource == "tunedModels/my-model"


def test_images_become_inline_and_file_data(deployment):
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2", "detail": "low"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
               {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
               {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}]
    req = gemini.to_request(deployment, {"messages": [{"role": "user", "content": content}]})
    assert req["contents"][0]["parts"] == [
        {"text": "what is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]


@pytest.mark.parametrize("part, param", [
    ({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}, "messages[0].content[0]"),
    ({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}, "messages[0].content[0]"),
    ({"type": "file", "file": {"file_id": "file-abc"}}, "messages[0].content[0]"),
    ({"type": "video", "video": {}}, "messages[0].content[0].type"),
])
def test_unusable_parts_name_the_param(deployment, part, param):
    with pytest.raises(InvalidRequest) as err:
        gemini.to_request(deployment, {"messages": [{"role": "user", "content": [part]}]})
    assert err.value.param == param and err.value.status == 400


def test_tool_history_becomes_function_call_and_merged_responses(deployment):
    messages = [
        {"role": "user", "content": "weather and time in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21, "sky": "clear"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "12:00"}]},
        {"role": "user", "content": "thanks"}]
    assert gemini.to_request(deployment, {"messages": messages})["contents"] == [
        {"role": "user", "parts": [{"text": "weather and time in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "clock", "args": {}}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp": 21, "sky": "clear"}}},
            {"functionResponse": {"name": "clock", "response": {"content": "12:00"}}},
            {"text": "thanks"}]}]


@pytest.mark.parametrize("messages, param", [
    ([{"role": "tool", "tool_call_id": "call_unknown", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                            "function": {"name": "f", "arguments": "{not json"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                            "function": {"name": "f", "arguments": "[1]"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "narrator", "content": "x"}], "messages[0].role"),
    ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}],
     "messages[0].content[0].type"),
])
def test_bad_messages_name_the_param(deployment, messages, param):
    with pytest.raises(InvalidRequest) as err:
        gemini.to_request(deployment, {"messages": messages})
    assert err.value.param == param


@pytest.mark.parametrize("choice, expected", [
    (None, None),
    ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
    ("required", {"functionCallingConfig": {"mode": "ANY"}}),
    ("none", {"functionCallingConfig": {"mode": "NONE"}}),
    ({"type": "function", "function": {"name": "weather"}},
     {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}),
])
def test_tools_and_tool_choice(deployment, choice, expected):
    no_params = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object",
                                                                                 "properties": {}}}}
    body = {"messages": USER, "tools": [WEATHER, no_params], "parallel_tool_calls": False}
    if choice is not None:
        body["tool_choice"] = choice
    req = gemini.to_request(deployment, body)
    assert req["tools"] == [{"functionDeclarations": [WEATHER_DECL, {"name": "clock"}]}]
    assert req.get("toolConfig") == expected


def test_non_function_tools_and_bad_tool_choice_are_refused(deployment):
    with pytest.raises(InvalidRequest) as err:
        gemini.to_request(deployment, {"messages": USER, "tools": [WEATHER, {"type": "web_search"}]})
    assert err.value.param == "tools[1].type"
    with pytest.raises(InvalidRequest) as err:
        gemini.to_request(deployment, {"messages": USER, "tools": [WEATHER], "tool_choice": "sometimes"})
    assert err.value.param == "tool_choice"


def test_json_schema_is_converted_to_gemini_schema(deployment):
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "additionalProperties": False, "required": ["name", "age", "tags", "pet", "kind"],
        "$defs": {"Pet": {"type": "object", "title": "Pet", "additionalProperties": False,
                          "properties": {"species": {"type": "string", "enum": ["cat", "dog"]}}}},
        "properties": {
            "name": {"type": "string", "description": "Full name", "format": "email", "minLength": 1},
            "age": {"type": ["integer", "null"], "format": "int32", "exclusiveMinimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "pet": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "null"}]},
            "kind": {"const": "person"},
            "score": {"oneOf": [{"type": "number"}, {"type": "string"}]},
            "when": {"type": "string", "format": "date-time"},
            "level": {"type": "integer", "enum": [1, 2, None]},
            "extra": {"properties": {"x": {"enum": ["a", 3]}}}}}
    body = {"messages": USER, "response_format": {"type": "json_schema", "json_schema": {
        "name": "person", "strict": True, "schema": schema}}}
    config = gemini.to_request(deployment, body)["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "required": ["name", "age", "tags", "pet", "kind"],
        "propertyOrdering": ["name", "age", "tags", "pet", "kind", "score", "when", "level", "extra"],
        "properties": {
            "name": {"type": "STRING", "description": "Full name", "minLength": 1},
            "age": {"type": "INTEGER", "format": "int32", "nullable": True},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
            "pet": {"type": "OBJECT", "title": "Pet", "nullable": True,
                    "properties": {"species": {"type": "STRING", "enum": ["cat", "dog"]}}},
            "kind": {"type": "STRING", "enum": ["person"]},
            "score": {"anyOf": [{"type": "NUMBER"}, {"type": "STRING"}]},
            "when": {"type": "STRING", "format": "date-time"},
            "level": {"type": "INTEGER", "nullable": True, "minimum": 1, "maximum": 2,
                      "description": "One of: 1, 2."},
            "extra": {"type": "OBJECT", "properties": {"x": {"type": "STRING", "enum": ["a", "3"]}}}}}}


def test_schema_all_of_merges_and_recursion_is_refused(deployment):
    merged = gemini_request.to_schema({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}},
                                          "required": ["a"]},
                                         {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}],
                               "description": "both"}, "p")
    assert merged == {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
                      "required": ["a", "b"], "description": "both"}
    tree = {"$defs": {"Node": {"type": "object", "properties": {"kids": {"type": "array",
                                                                         "items": {"$ref": "#/$defs/Node"}}}}},
            "$ref": "#/$defs/Node"}
    with pytest.raises(InvalidRequest) as err:
        gemini.to_request(deployment, {"messages": USER, "response_format": {
            "type": "json_schema", "json_schema": {"name": "tree", "schema": tree}}})
    assert err.value.param == "response_format.json_schema.schema"


# -- responses --------------------------------------------------------------------------------
def test_function_call_response_becomes_tool_calls(deployment):
    data = answer([{"text": "Checking."}, {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                   {"functionCall": {"name": "clock"}}])
    out = completion(gemini.from_response(deployment, data))
    message = out["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert [c["function"] for c in message["tool_calls"]] == [
        {"name": "weather", "arguments": '{"city":"Paris"}'}, {"name": "clock", "arguments": "{}"}]
    ids = [c["id"] for c in message["tool_calls"]]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    only_call = completion(gemini.from_response(deployment, answer([{"functionCall": {"name": "clock", "args": {}}}])))
    assert only_call["choices"][0]["message"]["content"] is None


def test_thought_signatures_stay_server_side_and_go_back(deployment):
    """Gemini 3 answers 400 when a history functionCall lacks its thoughtSignature; the ids stay short."""
    signature = "ZmFrZSBzaWcg+/+/IQ==" * 40
    data = answer([{"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": signature},
                   {"functionCall": {"name": "clock", "args": {}}}])  # parallel calls: only the first is signed
    calls = completion(gemini.from_response(deployment, data))["choices"][0]["message"]["tool_calls"]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", c["id"]) for c in calls)
    record = stream_record([{"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": signature}], "STOP")
    streamed = gemini.StreamTranslator(deployment).feed(record)[0]["choices"][0]["delta"]["tool_calls"][0]["id"]
    assert len(streamed) <= 40
    history = [{"role": "user", "content": "weather and time?"},
               {"role": "assistant", "content": None, "tool_calls": calls},
               {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
               {"role": "tool", "tool_call_id": calls[1]["id"], "content": "noon"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": streamed, "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                   {"id": "toolu_foreign", "type": "function", "function": {"name": "clock", "arguments": "{}"}}]}]
    contents = gemini.to_request(deployment, {"messages": history})["contents"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": signature},
        {"functionCall": {"name": "clock", "args": {}}}]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["weather", "clock"]
    assert contents[3]["parts"] == [{"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": signature},
                                    {"functionCall": {"name": "clock", "args": {}}}]


@pytest.mark.parametrize("reason, finish", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"), ("OTHER", "content_filter"),
    ("LANGUAGE", "content_filter")])
def test_finish_reason_mapping(deployment, reason, finish):
    out = completion(gemini.from_response(deployment, answer([{"text": "x"}], reason)))
    assert out["choices"][0]["finish_reason"] == finish


def test_candidates_thoughts_and_usage_details(deployment):
    data = {"candidates": [
        {"content": {"role": "model", "parts": [{"text": "thinking...", "thought": True}, {"text": "A"}]},
         "finishReason": "STOP", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "SAFETY", "index": 1}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 6, "totalTokenCount": 44}}
    out = completion(gemini.from_response(deployment, data))
    assert out["model"] == "gemini-2.0-flash"  # no modelVersion: the deployment's model
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "A", "stop"), (1, "B", "content_filter")]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 34, "total_tokens": 44,
                            "completion_tokens_details": {"reasoning_tokens": 30},
                            "prompt_tokens_details": {"cached_tokens": 6}}


def test_blocked_prompt_is_a_content_filter_choice(deployment):
    data = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.0-flash"}
    out = completion(gemini.from_response(deployment, data))
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "", "refusal": None},
                               "logprobs": None, "finish_reason": "content_filter"}]
    assert out["usage"] == {"prompt_tokens": 8, "completion_tokens": 0, "total_tokens": 8}


# -- streaming --------------------------------------------------------------------------------
def stream_record(parts, finish=None, candidates=4):
    candidate = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.0-flash-001", "responseId": "resp-9",
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": candidates,
                              "totalTokenCount": 5 + candidates}}


@responses.activate
def test_stream_text(deployment, call):
    responses.add(responses.POST, STREAM_URL, content_type="text/event-stream", body=sse(
        stream_record([{"text": "Hel"}], candidates=1), stream_record([{"text": "lo"}], candidates=2),
        stream_record([{"text": "!"}], "MAX_TOKENS", candidates=3)))
    chunks = chunks_of(deployment.adapter.chat_stream(call, {"messages": USER, "stream": True,
                                                             "stream_options": {"include_usage": True}}))
    request = responses.calls[0].request
    assert request.url == STREAM_URL
    assert request.headers["x-goog-api-key"] == "upstream-secret"
    assert request.headers["accept"] == "text/event-stream"
    assert sent() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert deltas(chunks) == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {"content": "!"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, None, "length"]
    assert {c["id"] for c in chunks} == {"chatcmpl-resp-9"}
    assert {c["model"] for c in chunks} == {"gemini-2.0-flash-001"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["object"] == "chat.completion.chunk"
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stream_function_calls_are_complete_tool_call_deltas(deployment):
    translator = gemini.StreamTranslator(deployment)
    records = [stream_record([{"text": "Let me check."}]),
               stream_record([{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                              {"functionCall": {"name": "clock", "args": {}}}]),
               stream_record([{"functionCall": {"name": "news", "args": {}}}], "STOP")]
    chunks = chunks_of([c for r in records for c in translator.feed(r)] + translator.finish())
    calls = [d["tool_calls"] for d in deltas(chunks) if "tool_calls" in d]
    assert [[(t["index"], t["function"]["name"], t["function"]["arguments"]) for t in c] for c in calls] == [
        [(0, "weather", '{"city":"Paris"}'), (1, "clock", "{}")], [(2, "news", "{}")]]
    assert all(t["id"].startswith("call_") and t["type"] == "function" for c in calls for t in c)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    first = gemini.StreamTranslator(deployment).feed(stream_record([{"functionCall": {"name": "clock"}}]))
    assert first[0]["choices"][0]["delta"]["role"] == "assistant"
    assert first[0]["choices"][0]["delta"]["content"] is None


def test_stream_blocked_prompt_and_safety_stop(deployment):
    translator = gemini.StreamTranslator(deployment)
    chunks = chunks_of(translator.feed({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})
                       + translator.finish())
    assert deltas(chunks) == [{"role": "assistant", "content": ""}, {}]
    assert chunks[1]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    translator = gemini.StreamTranslator(deployment)
    chunks = translator.feed(stream_record([{"text": "Partial"}])) + translator.feed(stream_record([], "SAFETY"))
    assert chunks[-1]["choices"][0]["finish_reason"] == "content_filter"


@responses.activate
def test_stream_error_record_first_is_raised_before_returning(deployment, call):
    responses.add(responses.POST, STREAM_URL, content_type="text/event-stream", body=sse(
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}))
    with pytest.raises(UpstreamError) as err:
        deployment.adapter.chat_stream(call, {"messages": USER})
    assert err.value.retryable and "overloaded" in err.value.message


@responses.activate
def test_stream_error_record_keeps_its_own_status(deployment, call):
    """A 429 arriving as a record inside a 200 stream is a rate limit (retried, then 429), not a 502."""
    responses.add(responses.POST, STREAM_URL, content_type="text/event-stream", body=sse(
        {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED",
                   "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}))
    with pytest.raises(UpstreamRateLimited) as err:
        deployment.adapter.chat_stream(call, {"messages": USER})
    assert err.value.retryable and err.value.status == 429 and err.value.headers == {"Retry-After": "3"}


@responses.activate
def test_stream_cut_before_finish_reason_is_an_error(deployment, call):
    responses.add(responses.POST, STREAM_URL, content_type="text/event-stream",
                  body=sse(stream_record([{"text": "Hel"}])))
    stream = deployment.adapter.chat_stream(call, {"messages": USER})
    assert next(stream)["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    with pytest.raises(UpstreamError, match="finishReason"):
        next(stream)


# -- errors -----------------------------------------------------------------------------------
def google_error(code, status, message, details=None):
    err = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


KEY_INVALID = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]
RETRY = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.4s"}]


@responses.activate
@pytest.mark.parametrize("status, state, details, cls, gateway_status", [
    (400, "INVALID_ARGUMENT", None, UpstreamRejected, 400),
    (404, "NOT_FOUND", None, UpstreamRejected, 404),
    (400, "INVALID_ARGUMENT", KEY_INVALID, UpstreamAuthFailed, 502),
    (401, "UNAUTHENTICATED", None, UpstreamAuthFailed, 502),
    (403, "PERMISSION_DENIED", None, UpstreamAuthFailed, 502),
    (429, "RESOURCE_EXHAUSTED", RETRY, UpstreamRateLimited, 429),
    (500, "INTERNAL", None, UpstreamError, 502),
    (503, "UNAVAILABLE", None, UpstreamError, 502),
    (504, "DEADLINE_EXCEEDED", None, UpstreamTimeout, 504),
])
def test_http_errors_are_mapped(deployment, call, status, state, details, cls, gateway_status):
    responses.add(responses.POST, URL, status=status, json=google_error(status, state, "google says no", details))
    with pytest.raises(cls) as err:
        deployment.adapter.chat(call, {"messages": USER})
    assert type(err.value) is cls
    assert err.value.status == gateway_status
    assert "google says no" in err.value.upstream_message  # for the log
    assert ("google says no" in err.value.message) is (cls is not UpstreamAuthFailed)
    assert err.value.retryable == (status in (429, 500, 503, 504))
    if cls is UpstreamRejected:
        assert err.value.message == "google says no"
        assert err.value.type == "invalid_request_error" and err.value.code == state
    if status == 429:
        assert err.value.headers == {"Retry-After": "37"}


@responses.activate
def test_stream_http_error_is_raised_before_returning(deployment, call):
    responses.add(responses.POST, STREAM_URL, status=429, headers={"Retry-After": "5"},
                  json=google_error(429, "RESOURCE_EXHAUSTED", "quota"))
    with pytest.raises(UpstreamRateLimited) as err:
        deployment.adapter.chat_stream(call, {"messages": USER})
    assert err.value.headers == {"Retry-After": "5"}


@responses.activate
def test_non_json_answer_is_an_upstream_error(deployment, call):
    responses.add(responses.POST, URL, body=b"<html>oops</html>", content_type="text/html")
    with pytest.raises(UpstreamError):
        deployment.adapter.chat(call, {"messages": USER})


# -- against the fake upstream (tests/fakes/gemini.py) ----------------------------------------
@pytest.fixture(scope="module")
def fake_base(upstream_url):
    return upstream_url


def fake_deployment(base, key="upstream-secret"):
    return Deployment("gem", {"model": "gemini/gemini-2.0-flash", "api_key": key, "api_base": base + "/v1beta"})


def recorded(base):
    return requests.get(base + "/_requests", timeout=5).json()[-1]


def test_fake_round_trip_text_and_stream(fake_base, call):
    dep = fake_deployment(fake_base)
    hello = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hello there"}]
    out = completion(dep.adapter.chat(call, {"messages": hello, "temperature": 0.2, "max_tokens": 20,
                                             "user": "dropped"}))
    assert out["choices"][0]["message"]["content"] == "echo: hello there"
    assert out["model"] == "gemini-2.0-flash-001"
    assert recorded(fake_base)["headers"]["x-goog-api-key"] == "upstream-secret"
    chunks = chunks_of(dep.adapter.chat_stream(call, {"messages": hello}))
    assert recorded(fake_base)["query"] == "alt=sse"
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "echo: hello there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_fake_round_trip_tool_call_both_ways(fake_base, call):
    adapter = fake_deployment(fake_base).adapter
    out = completion(adapter.chat(call, {"messages": USER, "tools": [WEATHER], "tool_choice": "required"}))
    tool_call = out["choices"][0]["message"]["tool_calls"][0]
    assert tool_call["function"] == {"name": "weather", "arguments": '{"q":"echo: hi"}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    history = USER + [out["choices"][0]["message"],
                      {"role": "tool", "tool_call_id": tool_call["id"], "content": '{"temp": 21}'}]
    final = completion(adapter.chat(call, {"messages": history, "tools": [WEATHER]}))
    assert final["choices"][0]["message"]["content"] == "echo: hi"
    chunks = chunks_of(adapter.chat_stream(call, {"messages": USER, "tools": [WEATHER]}))
    calls = [t for d in deltas(chunks) for t in d.get("tool_calls") or []]
    assert [(t["index"], t["function"]["name"]) for t in calls] == [(0, "weather")]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_fake_gemini_3_tool_loop_keeps_thought_signatures(fake_base, call, stream):
    adapter = Deployment("gem", {"model": "gemini/gemini-3-pro-preview", "api_key": "upstream-secret",
                                 "api_base": fake_base + "/v1beta"}).adapter
    body = {"messages": USER, "tools": [WEATHER]}
    if stream:
        tool_call = next(t for d in deltas(chunks_of(adapter.chat_stream(call, body))) for t in d.get("tool_calls") or [])
        tool_call = {k: tool_call[k] for k in ("id", "type", "function")}
    else:
        tool_call = adapter.chat(call, body)["choices"][0]["message"]["tool_calls"][0]
    history = USER + [{"role": "assistant", "content": None, "tool_calls": [tool_call]},
                      {"role": "tool", "tool_call_id": tool_call["id"], "content": "sunny"}]
    assert adapter.chat(call, dict(body, messages=history))["choices"][0]["message"]["content"] == "echo: hi"


def test_fake_accepts_converted_schema_and_length_limit(fake_base, call):
    schema = {"type": "object", "additionalProperties": False, "$schema": "x",
              "properties": {"a": {"type": ["string", "null"]}}}
    out = completion(fake_deployment(fake_base).adapter.chat(call, {
        "messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 2, "n": 2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}))
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in out["choices"]] == [
        (0, "echo: one", "length"), (1, "echo: one", "length")]


def test_fake_errors(fake_base, call):
    with pytest.raises(UpstreamAuthFailed):
        fake_deployment(fake_base, "wrong").adapter.chat(call, {"messages": USER})
    with pytest.raises(UpstreamRateLimited) as err:
        fake_deployment(fake_base).adapter.chat(call, {"messages": [{"role": "user", "content": "[[status:429]]"}]})
    assert err.value.headers == {"Retry-After": "1"}
    with pytest.raises(UpstreamError) as err:
        fake_deployment(fake_base).adapter.chat_stream(
            call, {"messages": [{"role": "user", "content": "[[status:503]]"}]})
    assert err.value.retryable
    stream = fake_deployment(fake_base).adapter.chat_stream(
        call, {"messages": [{"role": "user", "content": "cut [[stream-break]]"}]})
    with pytest.raises(UpstreamError):
        list(stream)


# -- through the gateway (Flask app, upstream mocked) -----------------------------------------
@pytest.fixture
def config(tmp_path):
    from tests.conftest import base_config
    config = base_config(tmp_path)
    config["model_list"].append({"model_name": "gem", "deltallm_params": {
        "model": "gemini/gemini-2.0-flash", "api_key": "upstream-secret", "api_base": BASE}})
    return config


def test_gateway_chat_and_stream(client, auth, api_key, upstream):
    upstream.post(URL, json=answer([{"text": "Hello!"}]))
    resp = client.post("/v1/chat/completions", headers=auth, json={"model": "gem", "messages": USER})
    assert resp.status_code == 200, resp.get_data()
    assert completion(resp.get_json())["choices"][0]["message"]["content"] == "Hello!"
    request = upstream.calls[0].request
    assert api_key not in str(dict(request.headers)) + request.url
    upstream.post(STREAM_URL, content_type="text/event-stream", body=sse(
        stream_record([{"text": "Hi"}]), stream_record([{"text": "!"}], "STOP")))
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": "gem", "messages": USER, "stream": True, "stream_options": {"include_usage": True}})
    events = [line[6:] for line in resp.get_data(as_text=True).split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = chunks_of(orjson.loads(e) for e in events[:-1])
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "Hi!"
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_gateway_reports_a_bad_gemini_key_as_upstream_auth_failure(client, auth, upstream):
    upstream.post(URL, status=400, json=google_error(400, "INVALID_ARGUMENT", "API key not valid.", KEY_INVALID))
    resp = client.post("/v1/chat/completions", headers=auth, json={"model": "gem", "messages": USER})
    assert resp.status_code == 502
    assert resp.get_json()["error"]["code"] == "upstream_auth_failed"
