"""The mock provider behaves like a model on tools and structured output (issue 12, item 20)."""
import json
from typing import Literal, Optional

import jsonschema
import orjson
import pydantic
import pytest

from deltallm.errors import InvalidRequest
from deltallm.providers import mock_tools
from deltallm.providers.base import Call
from deltallm.providers.mock import MockProvider
from deltallm.router.deployment import Deployment


class Address(pydantic.BaseModel):
    street: str
    zip_code: str = pydantic.Field(min_length=5, max_length=5)


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, lt=130)
    score: float = pydantic.Field(gt=0, lt=1)
    role: Literal["admin", "user"]
    version: Literal[2]
    active: bool
    email: str = pydantic.Field(json_schema_extra={"format": "email"})
    home: Address
    previous: list[Address] = pydantic.Field(min_length=2)
    nickname: Optional[str]


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]},
                                     "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "unit", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def provider(**params):
    return MockProvider(Deployment("m", {"model": "mock/m", **params}))


def body(text="hello", **fields):
    return {"model": "m", "messages": [{"role": "user", "content": text}], **fields}


def json_schema(model):
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": model.model_json_schema()}}


@pytest.mark.parametrize("schema", [
    Person.model_json_schema(),
    {"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
     "required": ["n"]},
    {"type": "integer", "maximum": -5},
    {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 2, "maxItems": 2},
    {"allOf": [{"type": "object", "properties": {"a": {"const": True}}, "required": ["a"]}]},
    {"type": ["null", "string"], "format": "date-time"},
])
def test_examples_validate_against_their_schema(schema):
    jsonschema.validate(mock_tools.example(schema, "some words"), schema)


def test_json_schema_answer_parses_as_the_clients_model():
    out = provider().chat(Call("r"), body(response_format=json_schema(Person)))
    content = out["choices"][0]["message"]["content"]
    person = Person.model_validate_json(content)
    assert person.version == 2 and isinstance(json.loads(content)["version"], int)
    assert out["choices"][0]["finish_reason"] == "stop"


def test_json_object_answer_is_a_json_object():
    content = provider().chat(Call("r"), body(response_format={"type": "json_object"}))["choices"][0]["message"]["content"]
    assert json.loads(content) == {"response": "hello"}


def test_structured_answer_streams_the_same_json():
    chunks = list(provider().chat_stream(Call("r"), body("a b c", response_format=json_schema(Person), stream=True)))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    Person.model_validate_json(text)


@pytest.mark.parametrize("choice,name", [
    ("required", "get_weather"), ({"type": "function", "function": {"name": "get_time"}}, "get_time")])
@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_choice_calls_a_tool_with_valid_arguments(choice, name, stream):
    request = body(tools=[WEATHER, TIME], tool_choice=choice)
    if stream:
        chunks = list(provider().chat_stream(Call("r"), request))
        calls = chunks[0]["choices"][0]["delta"]["tool_calls"]
        assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        out = provider().chat(Call("r"), request)["choices"][0]
        calls = out["message"]["tool_calls"]
        assert out["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in calls] == [name]
    schema = WEATHER["function"]["parameters"] if name == "get_weather" else TIME["function"]["parameters"]
    jsonschema.validate(orjson.loads(calls[0]["function"]["arguments"]), schema)


def test_a_prompt_naming_a_tool_calls_it_and_the_tool_result_is_answered():
    request = body("please use get_time now", tools=[WEATHER, TIME])
    first = provider().chat(Call("r"), request)["choices"][0]["message"]
    assert first["tool_calls"][0]["function"]["name"] == "get_time"
    request["messages"] += [first, {"role": "tool", "tool_call_id": first["tool_calls"][0]["id"], "content": "noon"}]
    second = provider().chat(Call("r"), request)["choices"][0]
    assert second["finish_reason"] == "stop" and "tool_calls" not in second["message"]
    plain = provider().chat(Call("r"), body("what is the weather", tools=[WEATHER, TIME]))["choices"][0]
    assert plain["finish_reason"] == "stop"  # "weather" is not the tool's name


def test_pins_override_behaviour():
    assert provider(mock_tool_calls=False).chat(Call("r"), body(tools=[WEATHER], tool_choice="required")
                                                 )["choices"][0]["finish_reason"] == "stop"
    fixed = provider(mock_response='{"x": 1}').chat(Call("r"), body(response_format=json_schema(Person)))
    assert fixed["choices"][0]["message"]["content"] == '{"x": 1}'
    per_request = provider().chat(Call("r"), body(mock_response="pinned", response_format={"type": "json_object"}))
    assert per_request["choices"][0]["message"]["content"] == "pinned"
    with pytest.raises(InvalidRequest):
        provider().chat(Call("r"), body(tools=[WEATHER], mock_tool_calls="sometimes"))


@pytest.mark.parametrize("stream", [False, True])
def test_pinned_tool_calls_are_answered_as_given(stream):
    pins = [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}},
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    request = body(tools=[WEATHER, TIME], mock_tool_calls=pins)
    if stream:
        calls = list(provider().chat_stream(Call("r"), request))[0]["choices"][0]["delta"]["tool_calls"]
    else:
        calls = provider().chat(Call("r"), request)["choices"][0]["message"]["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_time", '{"tz": "UTC"}'), ("get_weather", '{"city":"Oslo"}')]
    assert calls[0]["id"] == "call_1" and calls[1]["id"].startswith("call_")
    request["messages"].append({"role": "tool", "tool_call_id": "call_1", "content": "noon"})
    assert provider(mock_tool_calls=pins).chat(Call("r"), request)["choices"][0]["finish_reason"] == "stop"
    with pytest.raises(InvalidRequest) as err:
        provider().chat(Call("r"), body(tools=[WEATHER], mock_tool_calls=[{"function": {"arguments": "{}"}}]))
    assert err.value.param == "mock_tool_calls[0]"
