"""The official openai SDK's Responses API against real gunicorn/gevent workers, for every provider."""
import json

import openai
import pytest
import requests

from tests import openapi
from tests.e2e.conftest import MASTER
from tests.test_responses import check_events

MODELS = ["gpt-4o-mini", "claude", "gemini", "bedrock", "azure", "mocky"]
TOOL_MODELS = [m for m in MODELS if m != "mocky"]  # the mock calls tools only when forced or named (test_mock_sdk.py)
TOOLS = [{"type": "function", "name": "lookup", "description": "Look a thing up", "strict": False,
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]


def answer(model, text="Hello gateway"):
    return f"This is a mock response to: {text}" if model == "mocky" else f"echo: {text}"


@pytest.mark.parametrize("model", MODELS)
def test_plain_text(client, model):
    raw = client.responses.with_raw_response.create(
        model=model, input="Hello gateway", instructions="Be brief.", max_output_tokens=256,
        metadata={"ticket": "42"})
    response = raw.parse()
    assert response.output_text == answer(model)
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.metadata == {"ticket": "42"} and response.store is False
    assert response.instructions == "Be brief." and response.max_output_tokens == 256
    assert raw.headers["x-deltallm-deployment"].startswith("dep_")
    openapi.check("Response", json.loads(raw.text))


@pytest.mark.parametrize("model", MODELS)
def test_streamed_text_with_the_stream_helper(client, model):
    kinds, deltas = [], []
    with client.responses.stream(model=model, input=[{"role": "user", "content": "Hello gateway"}]) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == answer(model)
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert final.status == "completed" and final.usage.total_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_streamed_events_are_openais(client, gateway_url, model):
    """Raw SSE: `event:` names, sequence numbers and every event's schema; then the SDK's view of it."""
    events = []
    with requests.post(gateway_url + "/v1/responses", stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {MASTER}"},
                       json={"model": model, "input": "Hello gateway", "stream": True}) as resp:
        assert resp.status_code == 200
        name = None
        for line in resp.iter_lines():
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                event = json.loads(line[6:])
                assert event["type"] == name
                events.append(event)
    check_events(events)
    assert events[-1]["type"] == "response.completed"
    sdk_events = list(client.responses.create(model=model, input="Hello gateway", stream=True))
    assert [e.type for e in sdk_events] == [e["type"] for e in events]
    assert sdk_events[-1].response.output_text == answer(model)


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_function_tool_round_trip(client, upstream_log, model):
    history = [{"role": "user", "content": "Hello gateway"}]
    first = client.responses.create(model=model, input=history, tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "lookup" and calls[0].status == "completed"
    assert "q" in json.loads(calls[0].arguments)
    assert calls[0].id.startswith("fc_") and calls[0].call_id
    result = "lookup-result-42"
    history += first.output + [{"type": "function_call_output", "call_id": calls[0].call_id, "output": result}]
    second = client.responses.create(model=model, input=history, tools=TOOLS)
    assert second.status == "completed"
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text.startswith("echo:")  # the Bedrock fake echoes only a text-ending user turn
    sent = upstream_log()[-1]["body"]
    assert result in sent  # the function_call_output went up as the provider's tool result


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_streamed_function_call_round_trip(client, model):
    history = [{"role": "user", "content": "Hello gateway"}]
    with client.responses.stream(model=model, input=history, tools=TOOLS) as stream:
        deltas = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        first = stream.get_final_response()
    [call] = first.output
    assert call.type == "function_call" and call.name == "lookup" and call.arguments == deltas
    history += [call, {"type": "function_call_output", "call_id": call.call_id, "output": "42"}]
    with client.responses.stream(model=model, input=history, tools=TOOLS) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        second = stream.get_final_response()
    assert second.output_text == text and text.startswith("echo:")


def test_mock_provider_accepts_tool_history(client):
    history = [{"role": "user", "content": "Hello gateway"},
               {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
               {"type": "function_call_output", "call_id": "call_1", "output": "42"}]
    assert client.responses.create(model="mocky", input=history, tools=TOOLS).output_text == answer("mocky")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_stream_broken_mid_way_ends_with_error_and_failed(client, model):
    with client.responses.stream(model=model, input="[[stream-break]] hi") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError):
            stream.get_final_response()
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1].response.status == "failed" and events[-1].response.error.code == "server_error"
    assert events[-2].code == "upstream_error"


@pytest.mark.parametrize("fields,param", [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"include": ["no.such.field"]}, "include[0]"),  # OpenAI's own values are accepted (issue 12 item 2)
])
def test_unsupported_features_are_bad_requests(client, fields, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="gpt-4o-mini", input="Hello gateway", **fields)
    assert info.value.body["param"] == param
