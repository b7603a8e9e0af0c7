"""Gemini fidelity (issue 12, items 9-14): pinned upstream requests for what clients really send."""
import pydantic
import pytest
from typing import Literal

from deltallm.errors import InvalidRequest, UpstreamError
from deltallm.providers import gemini
from deltallm.providers.gemini_signatures import FOREIGN_SIGNATURE
from deltallm.router.deployment import Deployment

USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
WEATHER_DECL = {"name": "weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}


def request(model, **body):
    deployment = Deployment("gem", {"model": "gemini/" + model, "api_key": "k", "api_base": "https://g.test"})
    return gemini.to_request(deployment, {"messages": USER, **body})


def answer(parts, finish="STOP"):
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}}


# -- item 9: numeric and boolean const/enum keep their type ------------------------------------
class Versioned(pydantic.BaseModel):
    version: Literal[2]
    flag: Literal[True]
    ratio: Literal[0.5, 1.5]
    name: Literal["a", "b"]


def test_untyped_const_and_enum_are_typed_after_their_values():
    schema = {"type": "object", "properties": {
        "version": {"const": 2}, "flag": {"const": True}, "ratio": {"enum": [0.5, 1]},
        "name": {"enum": ["a", "b"]}, "mixed": {"enum": [1, "x"]}}, "required": ["version"]}
    config = request("gemini-2.0-flash", response_format={"type": "json_schema", "json_schema": {
        "name": "v", "schema": schema}})["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseSchema": {
        "type": "OBJECT", "properties": {
            "version": {"type": "INTEGER", "minimum": 2, "maximum": 2, "description": "One of: 2."},
            "flag": {"type": "BOOLEAN", "description": "One of: true."},
            "ratio": {"type": "NUMBER", "minimum": 0.5, "maximum": 1, "description": "One of: 0.5, 1."},
            "name": {"type": "STRING", "enum": ["a", "b"]}, "mixed": {"type": "STRING", "enum": ["1", "x"]}},
        "required": ["version"], "propertyOrdering": ["version", "flag", "ratio", "name", "mixed"]}}


def test_pydantic_literal_schema_answer_validates():
    """What the client's own pydantic model generates, and the answer Gemini gives under it, round-trip."""
    schema = Versioned.model_json_schema()
    config = request("gemini-2.0-flash", response_format={"type": "json_schema", "json_schema": {
        "name": "v", "schema": schema}})["generationConfig"]["responseSchema"]
    assert {name: prop["type"] for name, prop in config["properties"].items()} == {
        "version": "INTEGER", "flag": "BOOLEAN", "ratio": "NUMBER", "name": "STRING"}
    Versioned.model_validate_json('{"version": 2, "flag": true, "ratio": 0.5, "name": "a"}')


# -- item 10: penalties only where the model takes them -----------------------------------------
@pytest.mark.parametrize("model, expected", [
    ("gemini-2.0-flash", {"presencePenalty": 0.5}),
    ("gemini-2.5-flash", {}), ("gemini-2.5-pro", {}), ("gemini-3-pro-preview", {})])
def test_penalties_dropped_on_thinking_models_and_when_zero(model, expected):
    config = request(model, presence_penalty=0.5, frequency_penalty=0).get("generationConfig", {})
    assert config == expected


# -- item 11: tools and JSON output together ----------------------------------------------------
def test_tools_with_json_schema_keep_tools_and_ask_for_json_in_the_system_instruction():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    payload = request("gemini-2.5-flash", tools=[WEATHER], messages=[
        {"role": "system", "content": "Be brief."}, *USER],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    assert payload == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": (
            "Unless you call a function, respond with a single valid JSON object and nothing else: no prose, "
            'no Markdown code fences. The object must validate against this JSON Schema: '
            '{"type":"object","properties":{"a":{"type":"integer"}}}')}]},
        "tools": [{"functionDeclarations": [WEATHER_DECL]}]}


def test_json_object_without_tools_is_native_json_mode():
    assert request("gemini-2.5-flash", response_format={"type": "json_object"}, tools=[WEATHER],
                   tool_choice="none")["generationConfig"] == {"responseMimeType": "application/json"}


# -- item 12: finish reasons that are not answers ----------------------------------------------
@pytest.mark.parametrize("reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"])
def test_broken_function_calls_are_retryable_upstream_errors(reason):
    deployment = Deployment("gem", {"model": "gemini/gemini-2.5-flash", "api_key": "k"})
    with pytest.raises(UpstreamError) as err:
        gemini.from_response(deployment, answer([], reason))
    assert err.value.retryable and reason in str(err.value)
    translator = gemini.StreamTranslator(deployment)
    with pytest.raises(UpstreamError):
        translator.feed(answer([], reason))


# -- item 13: reasoning_effort as thinkingConfig; thoughts as reasoning_content ----------------
@pytest.mark.parametrize("model, effort, thinking", [
    ("gemini-2.5-flash", "minimal", {"thinkingBudget": 512, "includeThoughts": True}),
    ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("gemini-2.5-pro", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("gemini-3-flash-preview", "medium", {"thinkingLevel": "medium", "includeThoughts": True}),
    ("gemini-3-pro-preview", "minimal", {"thinkingLevel": "low", "includeThoughts": True}),
    ("gemini-3-pro-preview", "medium", {"thinkingLevel": "high", "includeThoughts": True})])
def test_reasoning_effort_becomes_thinking_config(model, effort, thinking):
    assert request(model, reasoning_effort=effort)["generationConfig"] == {"thinkingConfig": thinking}


@pytest.mark.parametrize("model, effort", [("gemini-2.0-flash", "low"), ("gemini-2.5-flash", "extreme")])
def test_reasoning_effort_refused_where_it_cannot_apply(model, effort):
    with pytest.raises(InvalidRequest) as err:
        request(model, reasoning_effort=effort)
    assert err.value.param == "reasoning_effort"


def test_thoughts_come_back_as_reasoning_content():
    deployment = Deployment("gem", {"model": "gemini/gemini-2.5-flash", "api_key": "k"})
    out = gemini.from_response(deployment, answer([{"text": "Let me think.", "thought": True}, {"text": "4"}]))
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "4", "refusal": None,
                                            "reasoning_content": "Let me think."}
    chunks = gemini.StreamTranslator(deployment).feed(answer([{"text": "Hmm.", "thought": True}], None))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "reasoning_content": "Hmm."}


# -- item 14: short tool-call ids; foreign history gets Google's placeholder -------------------
def test_foreign_tool_call_on_gemini_3_carries_the_placeholder():
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01A", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        {"id": "toolu_01B", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "rain"}]
    contents = request("gemini-3-pro-preview", messages=history, tools=[WEATHER])["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": FOREIGN_SIGNATURE},
        {"functionCall": {"name": "weather", "args": {}}}]}
    older = request("gemini-2.5-flash", messages=history, tools=[WEATHER])["contents"]
    assert older[1]["parts"][0] == {"functionCall": {"name": "weather", "args": {}}}
