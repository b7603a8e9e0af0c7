"""chat.completions through every native provider: SDK -> gunicorn -> adapter -> fake provider API."""
import json

import openai
import pytest

from tests import openapi
from tests.e2e.conftest import MASTER

MODELS = ["gpt-4o-mini", "claude", "gemini", "bedrock", "azure"]
HELLO = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello provider"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
                                            "parameters": {"type": "object",
                                                           "properties": {"q": {"type": "string"}},
                                                           "required": ["q"]}}}]


@pytest.mark.parametrize("model", MODELS)
def test_plain(client, model, upstream_log):
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=50)
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: Hello provider"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    openapi.check("CreateChatCompletionResponse", json.loads(raw.text))
    assert MASTER not in json.dumps(upstream_log())  # the client's key never goes upstream


@pytest.mark.parametrize("model", MODELS)
def test_streamed(client, model):
    chunks = list(client.chat.completions.create(model=model, messages=HELLO, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Hello provider"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    for chunk in chunks:
        openapi.check("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(client, model, stream):
    if stream:
        calls = {}
        for chunk in client.chat.completions.create(model=model, messages=HELLO, tools=TOOLS, stream=True):
            for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = delta.id or entry["id"]
                entry["name"] += (delta.function.name or "") if delta.function else ""
                entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
        call = calls[0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        first = client.chat.completions.create(model=model, messages=HELLO, tools=TOOLS)
        assert first.choices[0].finish_reason == "tool_calls"
        tool_call = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = tool_call.id, tool_call.function.name, tool_call.function.arguments
    assert name == "lookup" and call_id
    assert json.loads(arguments) == {"q": "echo: Hello provider"}
    follow_up = HELLO + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "42"},
        {"role": "user", "content": "thanks"}]
    final = client.chat.completions.create(model=model, messages=follow_up, tools=TOOLS, tool_choice="none")
    answer = final.choices[0].message.content  # (Bedrock keeps tool turns as text when no tools are offered)
    assert answer.startswith("echo:") and answer.endswith("thanks") and not final.choices[0].message.tool_calls


@pytest.mark.parametrize("model", ["claude", "gemini", "bedrock"])
def test_provider_overload_is_retried(client, model):
    import time
    prompt = f"[[status:503]][[once]] overloaded {model} {time.time()}"
    completion = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    assert completion.choices[0].message.content.startswith("echo:")


@pytest.mark.parametrize("model", MODELS)
def test_provider_rejection_keeps_status_and_message(client, model):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "[[status:400]] no"}])
    assert info.value.body["message"]


@pytest.mark.parametrize("model", MODELS + ["mocky"])
def test_legacy_completions(client, model):
    done = client.completions.create(model=model, prompt="Hello legacy", max_tokens=50)
    assert done.object == "text_completion"
    expected = "This is a mock response to: Hello legacy" if model == "mocky" else "echo: Hello legacy"
    assert done.choices[0].text == expected and done.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(model=model, prompt="Hello legacy", stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected
    assert streamed[-1].usage.total_tokens > 0


def test_legacy_completions_reject_echo(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="gpt-4o-mini", prompt="x", echo=True)
    assert info.value.body["param"] == "echo"
