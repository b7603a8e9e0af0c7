"""OpenAI chat requests as Anthropic Messages requests (system, turns, tools, response formats)."""
import orjson

from deltallm.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 4096
# Anthropic has no JSON mode; an instruction is the only portable lever (prefill is gone on new models).
JSON_OBJECT_INSTRUCTION = ("Respond with a single valid JSON object and nothing else: "
                           "no prose, no Markdown code fences.")
JSON_TOOL_DESCRIPTION = "Give the final answer by calling this tool; its input is the response."


def to_request(deployment, body):
    """The Messages API JSON for an (already validated) OpenAI chat-completions body."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("Anthropic models return a single choice; n must be 1", param="n")
    system, messages = convert_messages(body.get("messages") or [])
    payload = {"model": deployment.model, "max_tokens": max_tokens(deployment, body),
               "messages": messages}
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    if system:
        payload["system"] = "\n\n".join(system)
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            payload[key] = body[key]
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    tools, choice = convert_tools(body)
    if tools:
        payload["tools"] = tools
    if choice:
        payload["tool_choice"] = choice
    # Everything else (seed, logprobs, penalties, logit_bias ...) has no Messages API equivalent.
    return payload


def max_tokens(deployment, body):
    for value in (body.get("max_completion_tokens"), body.get("max_tokens"),
                  deployment.params.get("max_tokens")):
        if value is not None:
            return int(value)
    return DEFAULT_MAX_TOKENS  # Anthropic requires max_tokens; OpenAI clients usually omit it


def json_tool_name(body):
    """The forced tool that carries a json_schema response_format, or None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return None
    return (response_format.get("json_schema") or {}).get("name") or "json_response"


def convert_messages(messages):
    """(system texts, alternating user/assistant turns) from OpenAI messages."""
    system, turns = [], []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text.strip():
                system.append(text)
            continue
        if role == "user":
            turn_role, blocks = "user", user_blocks(message.get("content"), f"messages[{i}].content")
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
    for turn in turns:  # a lone text block reads better (and is smaller) as a plain string
        if len(turn["content"]) == 1 and turn["content"][0]["type"] == "text":
            turn["content"] = turn["content"][0]["text"]
    return system, turns


def text_of(content):
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def user_blocks(content, where):
    if not isinstance(content, list):
        return [{"type": "text", "text": content}] if (content or "").strip() else []
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if (part.get("text") or "").strip():
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), f"{where}[{j}].image_url.url"))
        elif kind == "file":
            blocks.append(document_block(part.get("file") or {}, f"{where}[{j}].file"))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Anthropic models",
                                 param=f"{where}[{j}].type")
    return blocks


def base64_source(url):
    """'data:image/png;base64,XXX' -> an Anthropic base64 source; None for anything else."""
    header, sep, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    fields = header.split(";")
    if sep and fields[0] and fields[-1] == "base64":
        return {"type": "base64", "media_type": fields[0], "data": data}
    return None


def image_block(ref, param):
    url = ref.get("url") if isinstance(ref, dict) else ref
    url = url if isinstance(url, str) else ""
    source = base64_source(url) or (
        {"type": "url", "url": url} if url.startswith(("https://", "http://")) else None)
    if not source:
        raise InvalidRequest("image_url.url must be an http(s) URL or a base64 data URL", param=param)
    return {"type": "image", "source": source}


def document_block(file, param):
    source = base64_source(file.get("file_data") or "")
    if not source or source["media_type"] != "application/pdf":
        # file_id refers to OpenAI's file store, which Anthropic cannot read
        raise InvalidRequest("Anthropic models accept files only as base64 PDF data URLs in file_data",
                             param=param)
    return {"type": "document", "source": source}


def assistant_blocks(message, i):
    text = text_of(message.get("content"))
    # Anthropic refuses blank text blocks ("text content blocks must contain non-whitespace text");
    # an assistant turn of "\n\n" before its tool calls is common
    blocks = [{"type": "text", "text": text}] if text.strip() else []
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("tool call arguments must be a JSON object", param=where) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("tool call arguments must be a JSON object", param=where)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})
    return blocks


def tool_result(message, i):
    if not message.get("tool_call_id"):
        raise InvalidRequest("tool messages need tool_call_id", param=f"messages[{i}].tool_call_id")
    block = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    text = text_of(message.get("content"))
    if text.strip():  # Anthropic rejects blank text blocks but accepts a result without content
        block["content"] = text
    return block


def convert_tools(body):
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
        tools.append(converted)
    choice = convert_tool_choice(body.get("tool_choice")) if tools else None
    name = json_tool_name(body)
    if name:
        if any(t["name"] == name for t in tools):
            raise InvalidRequest(f"response_format schema name {name!r} clashes with a tool name",
                                 param="response_format.json_schema.name")
        schema = body["response_format"].get("json_schema") or {}
        tools.append({"name": name, "description": schema.get("description") or JSON_TOOL_DESCRIPTION,
                      "input_schema": schema.get("schema") or {"type": "object"}})
        if len(tools) == 1 or (choice and choice["type"] == "none"):
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
