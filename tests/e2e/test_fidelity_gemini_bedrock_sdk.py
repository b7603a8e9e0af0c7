"""Issue 12 end to end: a two-turn tool loop with reasoning through the Gemini and Bedrock fakes, with
the official SDK, and what the client sees of the Gemini/Bedrock/family translation rules."""
import json
import time
from typing import Literal

import pydantic
import pytest

from tests import openapi

TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
                                            "parameters": {"type": "object",
                                                           "properties": {"q": {"type": "string"}},
                                                           "required": ["q"]}}}]
ASK = [{"role": "user", "content": "Find the weather"}]


def streamed_turn(client, model, messages):
    """(assistant message as the client would echo it, finish reason) from a streamed answer."""
    message = {"role": "assistant", "content": None}
    calls, reasoning, blocks, finish = {}, "", [], None
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True,
                                                reasoning_effort="low"):
        openapi.check("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = delta.model_extra or {}
        reasoning += extra.get("reasoning_content") or ""
        blocks += extra.get("thinking_blocks") or []
        if delta.content:
            message["content"] = (message["content"] or "") + delta.content
        for part in delta.tool_calls or []:
            entry = calls.setdefault(part.index, {"id": None, "type": "function",
                                                  "function": {"name": "", "arguments": ""}})
            entry["id"] = part.id or entry["id"]
            entry["function"]["name"] += part.function.name or ""
            entry["function"]["arguments"] += part.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    if blocks:
        message["thinking_blocks"] = blocks
    return message, reasoning, finish


@pytest.mark.parametrize("model", ["gemini-thinking", "bedrock-thinking"])
@pytest.mark.parametrize("stream", [False, True])
def test_two_turn_tool_loop_with_reasoning(client, model, stream, upstream_log):
    if stream:
        message, reasoning, finish = streamed_turn(client, model, ASK)
    else:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=ASK, tools=TOOLS,
                                                               reasoning_effort="low")
        openapi.check("CreateChatCompletionResponse", json.loads(raw.text))
        first = raw.parse().choices[0]
        message = first.message.model_dump(exclude_none=True)  # what clients append to their history
        reasoning, finish = (first.message.model_extra or {}).get("reasoning_content"), first.finish_reason
    assert finish == "tool_calls"
    assert reasoning == "Thinking about: Find the weather"
    call = message["tool_calls"][0]
    assert len(call["id"]) <= 40  # fits OpenAI (40) and Bedrock (64) in a mixed group
    assert call["function"]["name"] == "lookup" and json.loads(call["function"]["arguments"]) == {"q": "echo: Find the weather"}
    history = ASK + [message, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    second = client.chat.completions.create(model=model, messages=history, tools=TOOLS, reasoning_effort="low")
    # the fakes refuse a second turn without the signed reasoning (Bedrock/Claude) or thought signature (Gemini 3)
    assert second.choices[0].finish_reason == "stop"
    # (the Gemini fake echoes the last user text; the Bedrock fake the last turn's text, here a tool result)
    assert second.choices[0].message.content == ("echo: Find the weather" if model == "gemini-thinking" else "echo:")
    sent = json.loads(upstream_log()[-1]["body"])
    if model == "gemini-thinking":
        assert sent["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low", "includeThoughts": True}
        assert "thoughtSignature" in sent["contents"][1]["parts"][0]
    else:
        assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
        assert "reasoningContent" in sent["messages"][1]["content"][0]


def test_bedrock_json_object_answers_json(client):
    out = client.chat.completions.create(model="bedrock", messages=[{"role": "user", "content": "Give JSON"}],
                                         response_format={"type": "json_object"})
    assert out.choices[0].finish_reason == "stop"
    assert json.loads(out.choices[0].message.content) == {"q": "echo: Give JSON"}


def test_legacy_functions_through_gemini(client):
    out = client.chat.completions.create(model="gemini", messages=ASK, functions=[TOOLS[0]["function"]],
                                         function_call={"name": "lookup"})
    assert out.choices[0].finish_reason == "function_call"
    assert out.choices[0].message.function_call.name == "lookup"
    history = ASK + [{"role": "assistant", "content": None, "function_call": out.choices[0].message.function_call.model_dump()},
                     {"role": "function", "name": "lookup", "content": "sunny"}]
    second = client.chat.completions.create(model="gemini", messages=history, functions=[TOOLS[0]["function"]])
    assert second.choices[0].message.content == "echo: Find the weather"


@pytest.mark.parametrize("model, reason, stream", [
    ("gemini-retry", "MALFORMED_FUNCTION_CALL", False), ("gemini-retry", "UNEXPECTED_TOOL_CALL", True),
    ("bedrock-retry", "malformed_tool_use", False), ("bedrock-retry", "malformed_model_output", True)])
def test_broken_model_output_is_retried_not_passed_as_stop(client, model, reason, stream, upstream_log):
    """A malformed answer is an upstream error the router retries (here the retry answers); one failure
    per deployment and test, so no cooldown (allowed_fails 3) reaches the other tests."""
    prompt = f"Weather [[finish:{reason}]][[once]] {stream} {time.time()}"
    kwargs = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                       if c.choices)
    else:
        text = client.chat.completions.create(**kwargs).choices[0].message.content
    assert text.startswith("echo: Weather")  # the retry's answer, not an empty "stop"
    assert len(upstream_log()) == 2


class Versioned(pydantic.BaseModel):
    version: Literal[2]
    flag: Literal[True]
    ratio: Literal[0.5, 1.5]
    name: Literal["a", "b"]


def test_structured_output_with_number_and_boolean_literals_parses(client, upstream_log):
    """Gemini answers numbers and booleans for a pydantic model's number/boolean literals (not "2")."""
    out = client.chat.completions.parse(model="gemini", response_format=Versioned,
                                        messages=[{"role": "user", "content": "Describe [[json]]"}])
    assert out.choices[0].message.parsed == Versioned(version=2, flag=True, ratio=0.5, name="a")
    schema = json.loads(upstream_log()[-1]["body"])["generationConfig"]["responseSchema"]
    assert schema["properties"]["version"]["type"] == "INTEGER"
