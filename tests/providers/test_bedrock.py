"""Bedrock Converse adapter: pure translations, SigV4 signing, the binary event stream, error mapping."""
import re
import sys

import orjson
import pytest
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import (GatewayError, InvalidRequest, UpstreamAuthFailed, UpstreamError,
                             UpstreamRateLimited, UpstreamRejected, UpstreamTimeout)
from deltallm.providers import bedrock, bedrock_request
from deltallm.providers.base import Call
from deltallm.router.deployment import Deployment
from tests.fakes.bedrock import encode_message, event, exception

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BASE = "https://bedrock-runtime.us-east-1.amazonaws.com"
URL = f"{BASE}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
PARAMS = {"model": f"bedrock/{MODEL}", "aws_region_name": "us-east-1",
          "aws_access_key_id": "AKID", "aws_secret_access_key": "SECRET"}
CHAT = {"model": "claude", "messages": [{"role": "user", "content": "hello there"}]}
AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=AKID/\d{8}/us-east-1/bedrock/aws4_request, "
                  r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$")


def deployment(**params):
    return Deployment("x", dict(PARAMS, **params))


def converse_reply(content, stop="end_turn", tokens=(12, 5)):
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": {"inputTokens": tokens[0], "outputTokens": tokens[1], "totalTokens": sum(tokens)},
            "metrics": {"latencyMs": 80}}


def stream_body(*frames):
    return b"".join(frames)


TEXT_STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("messageStop", {"stopReason": "end_turn"}),
    event("metadata", {"usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9},
                       "metrics": {"latencyMs": 10}}),
]


# -- the test encoder itself, against vectors published for the AWS event stream format ----------
def test_encoder_matches_published_vectors():
    payload = b'{"foo": "bar"}'
    assert encode_message({}, payload) == (bytes([0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138]) + payload
                                           + bytes([174, 114, 88, 228]))
    framed = encode_message({"content-type": "application/json"}, payload)
    assert len(framed) == 62
    assert framed[:12] == bytes([0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70])
    assert framed[-4:] == bytes([111, 162, 191, 59])


# -- OpenAI -> Converse --------------------------------------------------------------------------
def test_to_request_messages_system_and_inference():
    body = {"model": "claude", "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": "END",
            "user": "u1", "seed": 3, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "use French"}]},
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
                {"role": "assistant", "content": "salut"},
                {"role": "user", "content": "more"}]}
    assert bedrock_request.to_request(deployment(), body) == {
        "system": [{"text": "be brief"}, {"text": "use French"}],
        "messages": [{"role": "user", "content": [{"text": "hi"}, {"text": "again"}]},
                     {"role": "assistant", "content": [{"text": "salut"}]},
                     {"role": "user", "content": [{"text": "more"}]}],
        "inferenceConfig": {"maxTokens": 50, "stopSequences": ["END"], "temperature": 0.2}}  # Claude: temperature only


def test_to_request_max_tokens_default_and_completion_tokens():
    assert bedrock_request.to_request(deployment(max_tokens=4096), CHAT)["inferenceConfig"] == {"maxTokens": 4096}
    body = dict(CHAT, max_completion_tokens=99, max_tokens=5, stop=["a", "b"])
    assert bedrock_request.to_request(deployment(), body)["inferenceConfig"] == {
        "maxTokens": 99, "stopSequences": ["a", "b"]}
    assert "inferenceConfig" not in bedrock_request.to_request(deployment(), CHAT)


def test_to_request_images():
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}}]}]}
    content = bedrock_request.to_request(deployment(), body)["messages"][0]["content"]
    assert content == [{"text": "what is it?"},
                       {"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}},
                       {"image": {"format": "webp", "source": {"bytes": "UklGRg=="}}}]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "data:image/bmp;base64,Qk0=",
                                 "data:image/png,rawbytes"])
def test_to_request_rejects_unusable_images(url):
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]}]}
    with pytest.raises(InvalidRequest) as err:
        bedrock_request.to_request(deployment(), body)
    assert err.value.param == "messages[0].content[1].image_url.url"
    assert err.value.status == 400


def test_to_request_tool_calls_and_results():
    body = {"messages": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny, 25C"},
        {"role": "user", "content": "thanks"}],
        "tools": [{"type": "function", "function": {
            "name": "weather", "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]}
    request = bedrock_request.to_request(deployment(), body)
    assert request["messages"] == [
        {"role": "user", "content": [{"text": "weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "weather", "input": {"city": "Rome"}}}]},
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"json": {"temp": 21}}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "sunny, 25C"}]}},
            {"text": "thanks"}]}]
    assert request["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "weather", "description": "Current weather",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}]}


def test_to_request_json_schema_becomes_converse_structured_output():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"],
              "additionalProperties": False}
    body = dict(CHAT, response_format={"type": "json_schema", "json_schema": {
        "name": "person", "description": "A person", "schema": schema, "strict": True}})
    config = bedrock_request.to_request(deployment(), body)["outputConfig"]
    assert config == {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
        "schema": orjson.dumps(schema).decode(), "name": "person", "description": "A person"}}}}
    assert "outputConfig" not in bedrock_request.to_request(deployment(), dict(CHAT, response_format={"type": "text"}))


def test_to_request_drops_blank_text_blocks():
    """Converse answers 400 "The text field in the ContentBlock object ... is blank"."""
    body = {"messages": [
        {"role": "system", "content": " "},
        {"role": "user", "content": [{"type": "text", "text": ""},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
        {"role": "assistant", "content": "\n\n", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "clock", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "12"},
                                                           {"type": "text", "text": " "},
                                                           {"type": "text", "text": "00"}]}],
        "tools": [{"type": "function", "function": {"name": "clock"}}]}
    request = bedrock_request.to_request(deployment(), body)
    assert "system" not in request
    assert request["messages"] == [
        {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "iVBO"}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "clock", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "12 00"}]}}]}]


@pytest.mark.parametrize("choice, expected", [
    (None, None), ("auto", None), ("required", {"any": {}}),
    ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}})])
def test_to_request_tool_choice(choice, expected):
    body = dict(CHAT, tools=[{"type": "function", "function": {"name": "f"}}], tool_choice=choice)
    config = bedrock_request.to_request(deployment(), body)["toolConfig"]
    assert config.get("toolChoice") == expected
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object", "properties": {}}}


def test_to_request_tool_choice_none_omits_tools():
    body = dict(CHAT, tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none")
    assert "toolConfig" not in bedrock_request.to_request(deployment(), body)


@pytest.mark.parametrize("body, param", [
    (dict(CHAT, n=2), "n"),
    (dict(CHAT, tool_choice="sometimes", tools=[{"type": "function", "function": {"name": "f"}}]), "tool_choice"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
])
def test_to_request_invalid(body, param):
    with pytest.raises(InvalidRequest) as err:
        bedrock_request.to_request(deployment(), body)
    assert err.value.param == param


# -- Converse -> OpenAI --------------------------------------------------------------------------
def test_from_response_text():
    result = bedrock.from_response(deployment(), converse_reply([{"text": "Hello"}, {"text": " you"}]),
                                   "chatcmpl-abc")
    ChatCompletion.model_validate(result)
    assert result["id"] == "chatcmpl-abc"
    assert result["model"] == MODEL
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Hello you", "refusal": None}
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def test_from_response_tool_use():
    data = converse_reply([{"text": "Let me check."}, {"toolUse": {
        "toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Paris"}}}], stop="tool_use")
    result = bedrock.from_response(deployment(), data)
    ChatCompletion.model_validate(result)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [{"id": "tooluse_1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city":"Paris"}'}}]
    only_tool = bedrock.from_response(deployment(), converse_reply(data["output"]["message"]["content"][1:]))
    assert only_tool["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter")])
def test_from_response_stop_reasons(stop, finish):
    result = bedrock.from_response(deployment(), converse_reply([{"text": "x"}], stop=stop))
    assert result["choices"][0]["finish_reason"] == finish


def test_usage_counts_cached_prompt_tokens():
    raw = {"inputTokens": 10, "outputTokens": 4, "totalTokens": 114, "cacheReadInputTokens": 100}
    assert bedrock.usage(raw) == {"prompt_tokens": 110, "completion_tokens": 4, "total_tokens": 114,
                                  "prompt_tokens_details": {"cached_tokens": 100}}


def translate_events(events):
    state = bedrock.StreamState(deployment(), "chatcmpl-s")
    chunks = [c for name, payload in events for c in bedrock.from_stream_event(state, name, payload)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def test_stream_events_text():
    chunks = translate_events([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}, "p": "abc"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "max_tokens"}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}, "metrics": {"latencyMs": 1}})])
    assert [c["choices"][0]["delta"] for c in chunks[:-2]] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": " there"}]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert {c["id"] for c in chunks} == {"chatcmpl-s"}


def test_stream_events_tool_use():
    chunks = translate_events([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_2", "name": "time"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
        ("messageStop", {"stopReason": "tool_use"})])
    calls = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "tu_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    assert "".join(d["function"]["arguments"] for d in calls if d["index"] == 0) == '{"city":"Paris"}'
    assert calls[3]["index"] == 1 and calls[3]["id"] == "tu_2"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_tool_use_without_input_gets_empty_object_arguments():
    chunks = translate_events([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tu_1", "name": "clock"}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_2", "name": "time"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ""}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_3", "name": "weather"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":"Oslo"}'}}}),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"})])
    arguments = {}
    for chunk in chunks:
        for d in chunk["choices"][0]["delta"].get("tool_calls", []):
            arguments[d["index"]] = arguments.get(d["index"], "") + d["function"]["arguments"]
    assert arguments == {0: "{}", 1: "{}", 2: '{"city":"Oslo"}'}  # as the non-streamed answer reads


# -- HTTP: signing, URL, body, errors ----------------------------------------------------------
@responses.activate
def test_chat_signs_and_posts_converse():
    responses.add(responses.POST, URL, json=converse_reply([{"text": "echo"}]),
                  headers={"x-amzn-RequestId": "5f0e-req"})
    body = dict(CHAT, temperature=0.5)
    result = deployment().adapter.chat(Call("req-1"), body)
    ChatCompletion.model_validate(result)
    assert result["id"] == "chatcmpl-5f0e-req"
    request = responses.calls[0].request
    assert request.url == URL
    assert AUTH.match(request.headers["Authorization"])
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["X-Amz-Date"])
    assert "X-Amz-Security-Token" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert not any("SECRET" in value or value.startswith("Bearer") for value in request.headers.values())
    assert orjson.loads(request.body) == {"messages": [{"role": "user", "content": [{"text": "hello there"}]}],
                                          "inferenceConfig": {"temperature": 0.5}}


@responses.activate
def test_session_token_and_api_base_override():
    url = "https://vpce.example.com/model/meta.llama3-8b-instruct-v1%3A0/converse"
    responses.add(responses.POST, url, json=converse_reply([{"text": "ok"}]))
    dep = deployment(model="bedrock/meta.llama3-8b-instruct-v1:0", aws_session_token="TOKEN",
                     api_base="https://vpce.example.com/")
    dep.adapter.chat(Call("req-1"), CHAT)
    headers = responses.calls[0].request.headers
    assert headers["X-Amz-Security-Token"] == "TOKEN"
    assert "x-amz-security-token" in headers["Authorization"]


@responses.activate
def test_credentials_from_the_standard_chain(monkeypatch, tmp_path):
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRETENV")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    responses.add(responses.POST, "https://bedrock-runtime.eu-west-3.amazonaws.com/model/m/converse",
                  json=converse_reply([{"text": "ok"}]))
    Deployment("x", {"model": "bedrock/m"}).adapter.chat(Call("req-1"), CHAT)
    assert "Credential=AKIDENV/" in responses.calls[0].request.headers["Authorization"]
    assert "/eu-west-3/bedrock/aws4_request" in responses.calls[0].request.headers["Authorization"]


def test_misconfigured_deployments(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent"))
    with pytest.raises(GatewayError) as err:
        Deployment("x", {"model": "bedrock/m", "aws_access_key_id": "AKID", "aws_secret_access_key": "S"}).adapter
    assert err.value.code == "provider_misconfigured" and "aws_region_name" in err.value.message
    with pytest.raises(GatewayError, match="only one of"):
        Deployment("x", {"model": "bedrock/m", "aws_region_name": "us-east-1", "aws_access_key_id": "AKID"}).adapter


def test_missing_botocore_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    with pytest.raises(GatewayError) as err:
        bedrock.load_botocore()
    assert err.value.code == "provider_misconfigured" and "deltallm[bedrock]" in err.value.message


@pytest.mark.parametrize("status, kind, cls, out_status, code", [
    (400, "ValidationException", UpstreamRejected, 400, "ValidationException"),
    (403, "AccessDeniedException", UpstreamAuthFailed, 502, "upstream_auth_failed"),
    (403, "UnrecognizedClientException", UpstreamAuthFailed, 502, "upstream_auth_failed"),
    (429, "ThrottlingException", UpstreamRateLimited, 429, "upstream_rate_limited"),
    (400, "ServiceQuotaExceededException", UpstreamRateLimited, 429, "upstream_rate_limited"),
    (408, "ModelTimeoutException", UpstreamTimeout, 504, "upstream_timeout"),
    (424, "ModelErrorException", UpstreamError, 502, "upstream_error"),
    (500, "InternalServerException", UpstreamError, 502, "upstream_error"),
    (503, "ServiceUnavailableException", UpstreamError, 502, "upstream_error"),
])
@responses.activate
def test_http_errors(status, kind, cls, out_status, code):
    responses.add(responses.POST, URL, status=status, json={"message": f"{kind} says no"},
                  headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"})
    with pytest.raises(GatewayError) as err:
        deployment().adapter.chat(Call("req-1"), CHAT)
    assert type(err.value) is cls
    assert (err.value.status, err.value.code) == (out_status, code)
    assert f"{kind} says no" in err.value.upstream_message  # for the log
    assert (f"{kind} says no" in err.value.message) is (cls is not UpstreamAuthFailed)
    assert err.value.retryable == (cls in (UpstreamRateLimited, UpstreamTimeout, UpstreamError))


@responses.activate
def test_stream_decodes_binary_event_stream():
    responses.add(responses.POST, URL + "-stream", body=stream_body(*TEXT_STREAM), status=200,
                  content_type="application/vnd.amazon.eventstream", headers={"x-amzn-RequestId": "r-9"})
    chunks = list(deployment().adapter.chat_stream(Call("req-1"), dict(CHAT, stream=True)))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 9 and chunks[0]["id"] == "chatcmpl-r-9"
    request = responses.calls[0].request
    assert request.headers["Accept"] == "application/vnd.amazon.eventstream"
    assert AUTH.match(request.headers["Authorization"])
    assert orjson.loads(request.body) == {"messages": [{"role": "user", "content": [{"text": "hello there"}]}]}


class Trickle:
    """A response whose body arrives a few bytes at a time, so frames straddle reads."""

    def __init__(self, data, size=7):
        self.data, self.size, self.chunked, self.closed = data, size, False, False
        self.raw = self

    def read1(self, _n):
        piece, self.data = self.data[:self.size], self.data[self.size:]
        return piece

    def close(self):
        self.closed = True


def test_event_frames_split_across_reads():
    resp = Trickle(stream_body(*TEXT_STREAM))
    events = list(bedrock.iter_events(resp, bedrock.load_botocore().eventstream))
    assert [name for name, _ in events] == ["messageStart", "contentBlockDelta", "contentBlockDelta",
                                            "contentBlockStop", "messageStop", "metadata"]
    assert events[1][1]["delta"] == {"text": "Hel"} and resp.closed


def test_corrupt_frame_is_an_upstream_error():
    frame = bytearray(TEXT_STREAM[0])
    frame[-1] ^= 0xFF
    with pytest.raises(UpstreamError, match="malformed event stream"):
        list(bedrock.iter_events(Trickle(bytes(frame)), bedrock.load_botocore().eventstream))


@responses.activate
def test_stream_exception_before_output_raises_from_chat_stream():
    responses.add(responses.POST, URL + "-stream", status=200, content_type="application/vnd.amazon.eventstream",
                  body=exception("throttlingException", "Too many tokens, please wait."))
    with pytest.raises(UpstreamRateLimited, match="Too many tokens"):
        deployment().adapter.chat_stream(Call("req-1"), CHAT)  # raised before any chunk is iterated


@responses.activate
def test_stream_exception_mid_stream_and_truncation():
    responses.add(responses.POST, URL + "-stream", status=200, content_type="application/vnd.amazon.eventstream",
                  body=stream_body(*TEXT_STREAM[:2], exception("modelStreamErrorException", "model broke")))
    chunks = deployment().adapter.chat_stream(Call("req-1"), CHAT)
    assert next(chunks)["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(UpstreamError, match="model broke"):
        list(chunks)
    responses.replace(responses.POST, URL + "-stream", status=200, body=stream_body(*TEXT_STREAM[:3]),
                      content_type="application/vnd.amazon.eventstream")
    with pytest.raises(UpstreamError, match="before messageStop"):
        list(deployment().adapter.chat_stream(Call("req-1"), CHAT))


# -- end to end against the fake Bedrock (tests/fakes/bedrock.py) in its own process -----------
@pytest.fixture(scope="module")
def fake_upstream(upstream_url):
    return upstream_url


def test_fake_chat_stream_and_tools(fake_upstream):
    adapter = deployment(api_base=fake_upstream).adapter
    body = {"messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hi"},
                         {"role": "user", "content": "you"}], "max_tokens": 10}
    result = adapter.chat(Call("req-1"), body)
    ChatCompletion.model_validate(result)
    assert result["choices"][0]["message"]["content"] == "echo: hi you"
    chunks = list(adapter.chat_stream(Call("req-1"), body))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hi you"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    called = adapter.chat(Call("req-1"), dict(body, tools=tools))
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["finish_reason"] == "tool_calls" and call["function"]["name"] == "search"
    history = dict(body, tools=tools, messages=body["messages"] + [
        called["choices"][0]["message"], {"role": "tool", "tool_call_id": call["id"], "content": "found"}])
    assert adapter.chat(Call("req-1"), history)["choices"][0]["message"]["content"] == "echo:"
    streamed = list(adapter.chat_stream(Call("req-1"), dict(body, tools=tools)))
    args = "".join(d["function"]["arguments"] for c in streamed if c["choices"]
                   for d in c["choices"][0]["delta"].get("tool_calls", []))
    assert orjson.loads(args) == {"q": "echo: hi you"}


def test_fake_accepts_structured_output(fake_upstream):
    adapter = deployment(api_base=fake_upstream).adapter
    body = dict(CHAT, response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {}}})
    assert adapter.chat(Call("req-1"), body)["choices"][0]["message"]["content"] == "echo: hello there"


def test_fake_errors(fake_upstream):
    adapter = deployment(api_base=fake_upstream).adapter
    with pytest.raises(UpstreamRateLimited):
        adapter.chat(Call("req-1"), {"messages": [{"role": "user", "content": "x [[status:429]]"}]})
    with pytest.raises(UpstreamRateLimited):
        adapter.chat_stream(Call("req-1"), {"messages": [
            {"role": "user", "content": "x [[stream-exception:throttlingException]]"}]})
    with pytest.raises(UpstreamAuthFailed):
        deployment(api_base=fake_upstream, aws_access_key_id="INVALIDKEY").adapter.chat(Call("req-1"), CHAT)
    with pytest.raises(UpstreamRejected) as err:
        adapter.chat(Call("req-1"), {"messages": [{"role": "user", "content": "x [[status:400]]"}]})
    assert err.value.status == 400 and "forced validation error" in err.value.message
    # the fake enforces Converse's rule that turns start with user: an assistant-first history gets
    # a minimal opening user turn (issue 12, item 16)
    out = adapter.chat(Call("req-1"), {"messages": [{"role": "assistant", "content": "hi"}]})
    assert out["choices"][0]["finish_reason"] == "stop"


def test_tool_choice_none_keeps_tool_history_as_text():
    body = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "user", "content": "thanks"}],
        "tools": [{"type": "function", "function": {"name": "weather"}}], "tool_choice": "none"}
    request = bedrock_request.to_request(deployment(), body)
    assert "toolConfig" not in request
    assert request["messages"][1] == {"role": "assistant",
                                      "content": [{"text": '[called tool weather with {"city":"Oslo"}]'}]}
    assert request["messages"][2] == {"role": "user", "content": [{"text": "[tool result: sunny]"},
                                                                  {"text": "thanks"}]}
