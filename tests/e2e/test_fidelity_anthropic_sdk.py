"""Issue 12 through the openai SDK and real workers: a two-turn tool loop with reasoning via the Anthropic
fake, Response objects field by field, and requests rejected as OpenAI rejects them."""
import json

import openai
import pytest

from tests import openapi
from tests.fakes.anthropic import sign
from tests.test_responses_fidelity import KEYS

TOOLS = [{"type": "function", "cache_control": {"type": "ephemeral"},  # LiteLLM's prompt caching convention
          "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def streamed_message(chunks):
    """The assistant message a client assembles from chunks (extra fields included, as LiteLLM clients do)."""
    message, calls = {"role": "assistant", "content": None, "reasoning_content": "", "thinking_blocks": []}, {}
    for chunk in chunks:
        for choice in chunk.choices:
            extra = choice.delta.model_extra or {}
            message["reasoning_content"] += extra.get("reasoning_content") or ""
            message["thinking_blocks"] += extra.get("thinking_blocks") or []
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": call.id, "type": "function",
                                                      "function": {"name": call.function.name, "arguments": ""}})
                entry["function"]["arguments"] += call.function.arguments or ""
    message["tool_calls"] = list(calls.values())
    return message


@pytest.mark.parametrize("stream", [False, True])
def test_two_turn_tool_loop_with_reasoning_through_anthropic(client, stream):
    messages = [{"role": "assistant", "content": "Hi! Ask me anything."},  # assistant-first (item 8)
                {"role": "user", "content": "weather in Oslo"}]
    fields = {"model": "claude", "tools": TOOLS, "reasoning_effort": "low", "temperature": 0.3, "top_p": 0.9,
              "stop": ["\n"]}
    if stream:
        first = streamed_message(client.chat.completions.create(messages=messages, stream=True, **fields))
    else:
        done = client.chat.completions.create(messages=messages, **fields)
        assert done.choices[0].finish_reason == "tool_calls"
        openapi.check("CreateChatCompletionResponse", done.model_dump(exclude_unset=True))
        first = done.choices[0].message.model_dump(exclude_none=True)  # what SDK users send back
    assert first["reasoning_content"] == "Thinking about: echo: weather in Oslo"
    assert first["thinking_blocks"] == [{"type": "thinking", "thinking": first["reasoning_content"],
                                         "signature": sign(first["reasoning_content"])}]
    call = first["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"q": "echo: weather in Oslo"}
    messages += [first, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    final = client.chat.completions.create(messages=messages, **fields)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "echo: weather in Oslo"
    assert final.choices[0].message.model_extra["reasoning_content"].startswith("Thinking about:")
    assert final.usage.prompt_tokens_details.cached_tokens == 10  # the fake's answer to cache_control
    messages[2]["thinking_blocks"][0]["signature"] = "forged"  # Anthropic's refusal is relayed as a 400
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(messages=messages, **fields)
    del messages[2]["thinking_blocks"]  # without the signed block this turn goes without thinking
    unthought = client.chat.completions.create(messages=messages, **fields).choices[0].message
    assert unthought.content == "echo: weather in Oslo" and "reasoning_content" not in unthought.model_extra


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "mocky"])
def test_response_objects_field_by_field(client, model):
    raw = client.responses.with_raw_response.create(model=model, input="Hello", reasoning={"effort": "low"})
    data = json.loads(raw.text)
    openapi.check("Response", data)
    assert set(data) == KEYS and raw.parse().status == "completed"
    assert data["reasoning"]["effort"] == (None if model == "mocky" else "low")  # only what was applied
    with client.responses.stream(model=model, input="Hello", include=["reasoning.encrypted_content"]) as stream:
        events = [e for e in stream if e.type.startswith("response.") and hasattr(e, "response")]
    assert [set(json.loads(e.response.model_dump_json())) >= KEYS for e in events] == [True] * len(events)
    assert events[0].response.usage is None and events[-1].response.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "gemini", "bedrock", "mocky"])
def test_forced_tool_choice_without_tools_and_foreign_tool_types_are_400(client, model):
    hello = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=hello, tool_choice="required")
    assert info.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=hello, tools=[{"type": "web_search"}])
    assert info.value.body["param"] == "tools[0].type"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_loop_with_reasoning_through_anthropic(client, stream):
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    items = [{"role": "user", "content": "weather in Oslo"}]
    fields = {"model": "claude", "tools": tools, "reasoning": {"effort": "low"},
              "include": ["reasoning.encrypted_content"], "store": False}  # as agent SDKs send it
    if stream:
        with client.responses.stream(input=items, **fields) as events:
            first = events.get_final_response()
    else:
        first = client.responses.create(input=items, **fields)
    assert [o.type for o in first.output] == ["reasoning", "function_call"]
    assert first.output[0].content[0].text == "Thinking about: echo: weather in Oslo"
    assert first.reasoning.effort == "low"
    call = first.output[1]
    items += [o.model_dump(exclude_none=True) for o in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    final = client.responses.create(input=items, **fields)  # the signed thinking went back to Anthropic
    assert final.output_text == "echo: weather in Oslo" and final.output[0].type == "reasoning"
