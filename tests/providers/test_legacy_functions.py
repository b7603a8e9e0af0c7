"""Legacy `functions` / `function_call` / role "function" (issue 12, item 19) on tools-only native APIs."""
import orjson
import pytest
import responses
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from deltallm.errors import InvalidRequest
from deltallm.providers.base import Call
from deltallm.providers.openai import OpenAIProvider
from deltallm.router.deployment import Deployment
from deltallm.translate import legacy

BASE = "https://gemini.test/v1beta"
URL = BASE + "/models/gemini-2.0-flash:generateContent"
STREAM_URL = BASE + "/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
WEATHER = {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
HISTORY = [{"role": "user", "content": "Weather in Paris?"},
           {"role": "assistant", "content": None, "function_call": {"name": "weather", "arguments": '{"city":"Paris"}'}},
           {"role": "function", "name": "weather", "content": "sunny"}]


def gemini():
    return Deployment("gem", {"model": "gemini/gemini-2.0-flash", "api_key": "k", "api_base": BASE}).adapter


def call_answer():
    return {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}


@responses.activate
def test_gemini_gets_tools_for_functions_and_the_answer_is_a_function_call():
    responses.post(URL, json=call_answer())
    out = gemini().chat(Call("r"), {"messages": HISTORY, "functions": [WEATHER],
                                    "function_call": {"name": "weather"}})
    assert orjson.loads(responses.calls[0].request.body) == {
        "contents": [{"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                     {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]},
                     {"role": "user", "parts": [{"functionResponse": {"name": "weather",
                                                                      "response": {"content": "sunny"}}}]}],
        "tools": [{"functionDeclarations": [{"name": "weather", "parameters": {
            "type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}}}
    completion = ChatCompletion.model_validate(out)
    assert completion.choices[0].finish_reason == "function_call"
    assert completion.choices[0].message.function_call.model_dump() == {"name": "weather",
                                                                         "arguments": '{"city":"Oslo"}'}
    assert completion.choices[0].message.tool_calls is None


@responses.activate
def test_gemini_stream_answers_function_call_deltas():
    record = dict(call_answer(), responseId="x")
    responses.post(STREAM_URL, content_type="text/event-stream", body=b"data: " + orjson.dumps(record) + b"\r\n\r\n")
    chunks = list(gemini().chat_stream(Call("r"), {"messages": HISTORY[:1], "functions": [WEATHER]}))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert deltas[0]["delta"]["function_call"] == {"name": "weather", "arguments": '{"city":"Oslo"}'}
    assert "tool_calls" not in deltas[0]["delta"]
    assert deltas[-1]["finish_reason"] == "function_call"


def test_bedrock_to_request_with_legacy_history():
    body = legacy.to_tools({"messages": HISTORY, "functions": [WEATHER], "function_call": "auto"})
    from deltallm.providers import bedrock_request
    adapter = Deployment("b", {"model": "bedrock/meta.llama3-70b-instruct-v1:0", "aws_region_name": "us-east-1",
                               "aws_access_key_id": "A", "aws_secret_access_key": "S"})
    assert bedrock_request.to_request(adapter, body) == {
        "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]},
                     {"role": "assistant", "content": [{"toolUse": {
                         "toolUseId": "call_function_1", "name": "weather", "input": {"city": "Paris"}}}]},
                     {"role": "user", "content": [{"toolResult": {"toolUseId": "call_function_1",
                                                                  "content": [{"text": "sunny"}]}}]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": WEATHER["parameters"]}}}]}}


@pytest.mark.parametrize("body, param", [
    ({"messages": [], "functions": [{"description": "no name"}]}, "functions"),
    ({"messages": [], "functions": [WEATHER], "function_call": "required"}, "function_call"),
    ({"messages": [{"role": "function", "name": "weather", "content": "x"}], "functions": [WEATHER]},
     "messages[0].name")])
def test_bad_legacy_fields_are_400(body, param):
    with pytest.raises(InvalidRequest) as err:
        legacy.to_tools(body)
    assert err.value.param == param


def test_only_tools_only_natives_translate():
    assert Deployment("o", {"model": "openai/gpt-4o", "api_key": "k"}).adapter.__class__ is OpenAIProvider
    for prefix, model in (("gemini", "gemini-2.0-flash"), ("anthropic", "claude-sonnet-4-5")):
        adapter = Deployment("n", {"model": f"{prefix}/{model}", "api_key": "k"}).adapter
        assert type(adapter).chat.__qualname__.startswith("accepting_functions")
