"""OpenAI chat requests as Anthropic Messages requests (system, turns, sampling, thinking, tools, formats)."""
import orjson

from deltallm.errors import InvalidRequest
from deltallm.providers.anthropic_content import (cache_control, marked, message_cache, system_blocks,
                                                  text_of, thinking_blocks, user_blocks)

DEFAULT_MAX_TOKENS = 4096
# Anthropic has no JSON mode; an instruction is the only portable lever (prefill is gone on new models).
JSON_OBJECT_INSTRUCTION = ("Respond with a single valid JSON object and nothing else: "
                           "no prose, no Markdown code fences.")
JSON_TOOL_DESCRIPTION = "Give the final answer by calling this tool; its input is the response."
# With thinking on, Anthropic refuses a forced tool: the schema tool is offered and asked for in words.
JSON_TOOL_INSTRUCTION = "Give your final answer by calling the `{}` tool; its input is the response."
# reasoning_effort -> extended thinking budget_tokens (Anthropic's floor is 1024).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# Anthropic requires the first turn to be the user's; a history that opens with the assistant gets this.
OPENING_USER_TURN = "."


def to_request(deployment, body):
    """The Messages API JSON for an (already validated) OpenAI chat-completions body."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("Anthropic models return a single choice; n must be 1", param="n")
    system, messages = convert_messages(body.get("messages") or [])
    thinking = thinking_config(body)
    if thinking and unsigned_tool_turn(messages):
        thinking = None
    payload = {"model": deployment.model, "max_tokens": max_tokens(deployment, body, thinking),
               "messages": messages}
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    stop = body.get("stop")
    # Anthropic refuses whitespace-only stop sequences ("\n" is common); they cannot be honoured
    stop = [s for s in ([stop] if isinstance(stop, str) else stop or []) if s.strip()]
    if stop:
        payload["stop_sequences"] = stop
    sampling(payload, body, thinking)
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    tools, choice = convert_tools(body, thinking)
    if tools:
        payload["tools"] = tools
    if choice:
        payload["tool_choice"] = choice
    if thinking:
        payload["thinking"] = thinking
        if json_tool_name(body):
            system.append({"type": "text", "text": JSON_TOOL_INSTRUCTION.format(json_tool_name(body))})
    if system:
        # one string unless a block carries a cache breakpoint (then the blocks themselves)
        cached = any("cache_control" in block for block in system)
        payload["system"] = system if cached else "\n\n".join(block["text"] for block in system)
    # Everything else (seed, logprobs, penalties, logit_bias ...) has no Messages API equivalent.
    return payload


def thinking_config(body):
    """Extended thinking for `reasoning_effort` (None: off)."""
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return None
    if effort not in THINKING_BUDGETS:
        raise InvalidRequest(f"reasoning_effort must be one of none, {', '.join(THINKING_BUDGETS)}",
                             param="reasoning_effort")
    return {"type": "enabled", "budget_tokens": THINKING_BUDGETS[effort]}


def unsigned_tool_turn(turns):
    """The last assistant turn called tools without a signed thinking block first (a history from another
    provider, or a client that dropped `thinking_blocks`): Anthropic refuses thinking for such a turn, so
    this request goes without it rather than failing."""
    last = next((t["content"] for t in reversed(turns) if t["role"] == "assistant"), None)
    if not isinstance(last, list) or not any(block["type"] == "tool_use" for block in last):
        return False
    return last[0]["type"] not in ("thinking", "redacted_thinking")


def sampling(payload, body, thinking):
    temperature, top_p, top_k = body.get("temperature"), body.get("top_p"), body.get("top_k")
    if thinking:
        # Thinking refuses temperature and top_k changes, and takes top_p only from 0.95 to 1.
        if top_p is not None and 0.95 <= top_p < 1:
            payload["top_p"] = top_p
        return
    # Current Claude models refuse temperature and top_p together: temperature wins; top_p 1 is the default.
    if temperature is not None:
        payload["temperature"] = temperature
    elif top_p is not None and top_p != 1:
        payload["top_p"] = top_p
    if top_k is not None:
        payload["top_k"] = top_k


def max_tokens(deployment, body, thinking=None):
    value = next((int(v) for v in (body.get("max_completion_tokens"), body.get("max_tokens"),
                                   deployment.params.get("max_tokens")) if v is not None),
                 DEFAULT_MAX_TOKENS)  # Anthropic requires max_tokens; OpenAI clients usually omit it
    if thinking and value <= thinking["budget_tokens"]:
        value += thinking["budget_tokens"]  # the budget must stay below max_tokens: room for the answer too
    return value


def json_tool_name(body):
    """The forced tool that carries a json_schema response_format, or None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return None
    return (response_format.get("json_schema") or {}).get("name") or "json_response"


def convert_messages(messages):
    """(system text blocks, alternating user/assistant turns) from OpenAI messages."""
    system, turns = [], []
    for i, message in enumerate(messages):
        role, where = message.get("role"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(system_blocks(message, where))
            continue
        if role == "user":
            turn_role, blocks = "user", user_blocks(message, where)
        elif role == "assistant":
            turn_role, blocks = "assistant", assistant_blocks(message, i)
        elif role == "tool":
            turn_role, blocks = "user", [tool_result(message, i)]
        else:
            raise InvalidRequest(f"role {role!r} is not supported by Anthropic models",
                                 param=f"messages[{i}].role")
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty OpenAI message carries nothing
        # Anthropic requires strict user/assistant alternation, so same-role neighbours (notably
        # the results of parallel tool calls) become one turn.
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": OPENING_USER_TURN}]})
    for turn in turns:  # a lone text block reads better (and is smaller) as a plain string
        only = turn["content"][0]
        if len(turn["content"]) == 1 and only["type"] == "text" and "cache_control" not in only:
            turn["content"] = only["text"]
    return system, turns


def assistant_blocks(message, i):
    where = f"messages[{i}]"
    blocks = thinking_blocks(message, where)  # signed thinking first, as Anthropic returned it
    text = text_of(message.get("content"))
    # Anthropic refuses blank text blocks ("text content blocks must contain non-whitespace text");
    # an assistant turn of "\n\n" before its tool calls is common
    if text.strip():
        blocks.append({"type": "text", "text": text})
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        param = f"{where}.tool_calls[{j}].function.arguments"
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("tool call arguments must be a JSON object", param=param) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("tool call arguments must be a JSON object", param=param)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})
    if blocks and blocks[-1]["type"] in ("text", "tool_use"):
        marked(blocks[-1], message_cache(message, where))
    return blocks


def tool_result(message, i):
    if not message.get("tool_call_id"):
        raise InvalidRequest("tool messages need tool_call_id", param=f"messages[{i}].tool_call_id")
    block = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    text = text_of(message.get("content"))
    if text.strip():  # Anthropic rejects blank text blocks but accepts a result without content
        block["content"] = text
    return marked(block, message_cache(message, f"messages[{i}]"))


def convert_tools(body, thinking=None):
    """(Anthropic tools, tool_choice) from OpenAI tools, tool_choice, parallel_tool_calls and
    a json_schema response_format (a forced tool whose input is the structured answer)."""
    tools = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise InvalidRequest(f"tool type {tool.get('type')!r} is not supported by Anthropic models",
                                 param=f"tools[{i}].type")
        function = tool.get("function") or {}
        converted = {"name": function.get("name"),
                     "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            converted["description"] = function["description"]
        tools.append(marked(converted, cache_control(tool, f"tools[{i}]")))
    choice = convert_tool_choice(body.get("tool_choice")) if tools else None
    if thinking and choice and choice["type"] in ("any", "tool"):
        raise InvalidRequest("Anthropic models cannot think (reasoning_effort) while a tool call is forced "
                             "(tool_choice required or a named function); drop one of them",
                             param="tool_choice", code="unsupported_value")
    name = json_tool_name(body)
    if name:
        if any(t["name"] == name for t in tools):
            raise InvalidRequest(f"response_format schema name {name!r} clashes with a tool name",
                                 param="response_format.json_schema.name")
        schema = body["response_format"].get("json_schema") or {}
        tools.append({"name": name, "description": schema.get("description") or JSON_TOOL_DESCRIPTION,
                      "input_schema": schema.get("schema") or {"type": "object"}})
        if thinking:
            choice = {"type": "auto"}  # see JSON_TOOL_INSTRUCTION
        elif len(tools) == 1 or (choice and choice["type"] == "none"):
            choice = {"type": "tool", "name": name}
        elif choice is None or choice["type"] == "auto":
            choice = {"type": "any"}  # call a real tool or answer through the schema tool, no prose
        # "any" already fits; a specifically forced client tool stays forced (explicit request)
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":  # Anthropic's "none" choice takes no other field
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def convert_tool_choice(value):
    if value is None:
        return None
    if value in ("auto", "none"):
        return {"type": value}
    if value == "required":
        return {"type": "any"}
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "tool", "name": (value.get("function") or {}).get("name")}
    raise InvalidRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
