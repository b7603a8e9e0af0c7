"""OpenAI chat requests as Bedrock Converse requests (system, turns, tools, inference settings)."""
import orjson

from deltallm.errors import InvalidRequest
from deltallm.providers.base import parse_json
from deltallm.providers.bedrock_claude import (OPENING_TURN, is_claude, json_object_tool, reasoning_blocks,
                                               sampling, thinking_budget)

IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def to_request(deployment, body):
    """The Converse body for an OpenAI chat request (the model id travels in the URL)."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("Bedrock returns a single choice; n must be 1", param="n")
    claude = is_claude(deployment.model)
    budget = thinking_budget(body, claude)
    system, messages = [], []
    for i, message in enumerate(body.get("messages") or []):
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system += [{"text": text} for text in texts(content, f"messages[{i}].content")]
        elif role == "user":
            append_turn(messages, "user", user_blocks(content, i))
        elif role == "assistant":
            append_turn(messages, "assistant", (reasoning_blocks(message) if claude else [])
                        + assistant_blocks(message, i))
        elif role == "tool":
            append_turn(messages, "user", [tool_result(message, i)])
        else:
            raise InvalidRequest(f"message role {role!r} is not supported", param=f"messages[{i}].role")
    if messages and messages[0]["role"] == "assistant":  # Converse wants the user to speak first
        messages.insert(0, {"role": "user", "content": list(OPENING_TURN["content"])})
    if budget is not None and unsigned_tool_turn(messages):
        # Claude refuses thinking when the last assistant turn called a tool without its signed
        # reasoning (history from another model of a mixed group): this turn runs without thinking.
        budget = None
    instruction, json_tools = json_object_tool(body, claude, budget)
    if instruction:
        system.append({"text": instruction})
    request = {"messages": messages}
    if system:
        request["system"] = system
    inference = inference_config(deployment, body)
    extra = sampling(body, inference, claude, budget)
    if inference:
        request["inferenceConfig"] = inference
    if extra:
        request["additionalModelRequestFields"] = extra
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        request["outputConfig"] = output_config(response_format.get("json_schema") or {})
    tools = tool_config(body) or json_tools
    if tools:
        request["toolConfig"] = tools
    else:
        tool_blocks_as_text(messages)
    return request


def unsigned_tool_turn(messages):
    """Whether the last assistant turn calls a tool without starting with a reasoning block."""
    turn = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    return bool(turn) and any("toolUse" in b for b in turn) and "reasoningContent" not in turn[0]


def tool_blocks_as_text(messages):
    """Converse refuses toolUse/toolResult blocks without a toolConfig, and has no "none" tool choice:
    with no tools offered (tool_choice none), earlier tool turns are kept as plain text instead."""
    for message in messages:
        for k, block in enumerate(message["content"]):
            if "toolUse" in block:
                use = block["toolUse"]
                message["content"][k] = {"text": f"[called tool {use['name']} with "
                                                 f"{orjson.dumps(use['input']).decode()}]"}
            elif "toolResult" in block:
                result = block["toolResult"]["content"][0]
                value = result["text"] if "text" in result else orjson.dumps(result["json"]).decode()
                message["content"][k] = {"text": f"[tool result: {value}]"}


def append_turn(messages, role, blocks):
    """Converse wants strictly alternating turns, so consecutive same-role turns are merged."""
    if not blocks:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def texts(content, param, keep_blank=False):
    """The non-blank texts of a string or a list of text/refusal parts (Converse refuses a blank
    text block with a ValidationException; models often answer "\n\n" before a tool call)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content.strip() or (keep_blank and content) else []
    found = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise InvalidRequest(f"content part type {kind!r} is not supported here",
                                 param=f"{param}[{j}].type")
        if (part.get(kind) or "").strip() or (keep_blank and part.get(kind)):
            found.append(part[kind])
    return found


def user_blocks(content, i):
    if content is None or isinstance(content, str):
        return [{"text": text} for text in texts(content, f"messages[{i}].content")]
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if (part.get("text") or "").strip():
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), f"messages[{i}].content[{j}].image_url.url"))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Bedrock",
                                 param=f"messages[{i}].content[{j}].type")
    return blocks


def image_block(image, param):
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url.startswith("data:"):
        raise InvalidRequest("Bedrock accepts images only as base64 data URLs "
                             "(data:image/png;base64,...), not http(s) URLs", param=param)
    header, _, data = url.partition(",")
    mime = header[5:].split(";")[0].lower()
    fmt = IMAGE_FORMATS.get(mime.partition("/")[2]) if mime.startswith("image/") else None
    if not fmt or ";base64" not in header or not data.strip():
        raise InvalidRequest(f"unsupported image data URL ({mime or 'no media type'}); "
                             "use base64 png, jpeg, gif or webp", param=param)
    return {"image": {"format": fmt, "source": {"bytes": data.strip()}}}


def assistant_blocks(message, i):
    blocks = [{"text": text} for text in texts(message.get("content"), f"messages[{i}].content")]
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            arguments = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequest("tool call arguments must be a JSON object",
                                 param=f"messages[{i}].tool_calls[{j}].function.arguments")
        blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"),
                                   "input": arguments}})
    return blocks


def tool_result(message, i):
    if not message.get("tool_call_id"):
        raise InvalidRequest("tool messages need tool_call_id", param=f"messages[{i}].tool_call_id")
    text = "".join(texts(message.get("content"), f"messages[{i}].content", keep_blank=True))
    parsed = parse_json(text.encode()) if text.lstrip().startswith("{") else None
    content = [{"json": parsed}] if isinstance(parsed, dict) else [{"text": text}]
    return {"toolResult": {"toolUseId": message["tool_call_id"], "content": content}}


def inference_config(deployment, body):
    config = {}
    max_tokens = (body.get("max_completion_tokens") or body.get("max_tokens")
                  or deployment.params.get("max_tokens"))
    if max_tokens:
        config["maxTokens"] = int(max_tokens)
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def output_config(json_schema):
    """Converse structured output; its JsonSchemaDefinition takes the schema as a JSON string."""
    definition = {"schema": orjson.dumps(json_schema.get("schema") or {"type": "object"}).decode()}
    definition.update((k, json_schema[k]) for k in ("name", "description") if json_schema.get(k))
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}


def tool_config(body):
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools or choice == "none":
        return None
    specs = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if tool.get("type", "function") == "function" else None
        if not function or not function.get("name"):
            raise InvalidRequest("Bedrock supports only function tools with a name", param=f"tools[{i}]")
        spec = {"name": function["name"], "inputSchema": {
            "json": function.get("parameters") or {"type": "object", "properties": {}}}}
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config = {"tools": specs}
    # "auto" is Converse's default and some models reject an explicit toolChoice, so it is omitted.
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
    elif choice not in (None, "auto"):
        raise InvalidRequest("tool_choice must be none, auto, required or a named function",
                             param="tool_choice")
    return config
