"""The mock provider through the openai SDK: structured output and tool calls as client apps use them."""
import json
from typing import Literal

import pydantic


class Weather(pydantic.BaseModel):
    city: str
    version: Literal[2]
    days: int = pydantic.Field(ge=1, le=7)


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": Weather.model_json_schema()}}]


def test_parse_returns_the_clients_model(client):
    done = client.chat.completions.parse(model="mocky", messages=[{"role": "user", "content": "Oslo"}],
                                         response_format=Weather)
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Weather) and parsed.version == 2 and parsed.city == "Oslo"


def test_streamed_parse_and_json_object(client):
    with client.chat.completions.stream(model="mocky", messages=[{"role": "user", "content": "Oslo"}],
                                        response_format=Weather) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Weather)
    done = client.chat.completions.create(model="mocky", messages=[{"role": "user", "content": "x"}],
                                          response_format={"type": "json_object"})
    assert isinstance(json.loads(done.choices[0].message.content), dict)


def test_required_tool_choice_and_tool_loop(client):
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(model="mocky", messages=messages, tools=TOOLS, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    Weather.model_validate_json(call.function.arguments)
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    final = client.chat.completions.create(model="mocky", messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content
