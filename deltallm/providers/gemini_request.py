"""OpenAI chat requests as Gemini GenerateContentRequests (turns, parts, tools, generation config)."""
import base64
import binascii
import mimetypes
import uuid

from deltallm.errors import InvalidRequest
from deltallm.providers.base import parse_json
from deltallm.providers.gemini_schema import to_schema

TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
CONFIG = (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK"),
          ("n", "candidateCount"), ("seed", "seed"), ("presence_penalty", "presencePenalty"),
          ("frequency_penalty", "frequencyPenalty"))


def to_request(deployment, body):
    """An OpenAI chat-completions body as a GenerateContentRequest (unsupported fields dropped)."""
    system, contents = convert_messages(body.get("messages") or [])
    payload = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        payload["tools"] = function_declarations(body["tools"])
        if body.get("tool_choice") is not None:
            payload["toolConfig"] = tool_config(body["tool_choice"])
    config = generation_config(body)
    if config:
        payload["generationConfig"] = config
    if deployment.params.get("safety_settings"):
        payload["safetySettings"] = deployment.params["safety_settings"]
    return payload


def convert_messages(messages):
    """(systemInstruction parts, contents): Gemini wants alternating user/model turns."""
    system, turns, names = [], [], {}
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
            continue
        if role == "user":
            gem_role, parts = "user", user_parts(msg.get("content"), i)
        elif role == "assistant":
            gem_role, parts = "model", assistant_parts(msg, i, names)
        elif role == "tool":
            gem_role, parts = "user", [tool_result(msg, i, names)]
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param=f"messages[{i}].role")
        if not parts:
            continue
        if turns and turns[-1]["role"] == gem_role:
            turns[-1]["parts"].extend(parts)  # consecutive same-role turns (and tool results) merge
        else:
            turns.append({"role": gem_role, "parts": parts})
    if not turns:
        raise InvalidRequest("messages must contain a user or assistant message", param="messages")
    return system, turns


def texts(content, param):
    """The non-empty text pieces of a text-only content (string or list of text/refusal parts)."""
    if content is None or isinstance(content, str):
        return [content] if content else []
    for j, part in enumerate(content):
        if part.get("type") not in ("text", "refusal"):
            raise InvalidRequest(f"content part type {part.get('type')!r} is not allowed here",
                                 param=f"{param}[{j}].type")
    return [part[part["type"]] for part in content if part.get(part["type"])]


def user_parts(content, i):
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for j, part in enumerate(content):
        kind, param = part.get("type"), f"messages[{i}].content[{j}]"
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(media_part(image.get("url") if isinstance(image, dict) else image, param))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            parts.append(media_part(f"data:audio/{audio.get('format')};base64,{audio.get('data')}", param))
        elif kind == "file":  # inline data URLs only: uploaded OpenAI file ids mean nothing to Google
            parts.append(media_part((part.get("file") or {}).get("file_data"), param))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Gemini deployments",
                                 param=param + ".type")
    return parts


def media_part(url, param):
    """A data URL becomes inlineData; a remote URL becomes fileData with a MIME type guessed from its path."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest("missing media url", param=param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise InvalidRequest("data URLs must be base64 encoded", param=param)
        mime = header.split(";")[0] or "application/octet-stream"
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        mime = mimetypes.guess_type(url.split("?")[0].split("#")[0])[0] or "image/jpeg"
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise InvalidRequest("media urls must be data:, http(s):// or gs:// URLs", param=param)


def assistant_parts(msg, i, names):
    parts = [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
    for k, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        names[call.get("id")] = fn.get("name")
        args = parse_arguments(fn.get("arguments"), f"messages[{i}].tool_calls[{k}].function.arguments")
        part = {"functionCall": {"name": fn.get("name"), "args": args}}
        signature = thought_signature(call.get("id"))
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def parse_arguments(arguments, param):
    args = parse_json(arguments.encode()) if isinstance(arguments, str) and arguments else arguments or {}
    if not isinstance(args, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return args


# Gemini 3 refuses a history functionCall without the thoughtSignature it came with (400 "missing a
# thought_signature"); OpenAI clients echo only the call id, so the signature rides in it (URL-safe).
SIGNATURE_MARK = "__thought__"


def call_id(call, signature):
    base = call.get("id") or "call_" + uuid.uuid4().hex[:24]
    packed = signature.replace("+", "-").replace("/", "_").rstrip("=") if isinstance(signature, str) else ""
    return base + SIGNATURE_MARK + packed if packed else base


def thought_signature(tool_call_id):
    """The thoughtSignature (standard base64) carried by one of our tool-call ids, or None."""
    packed = tool_call_id.partition(SIGNATURE_MARK)[2] if isinstance(tool_call_id, str) else ""
    try:  # a client-made id that merely contains the mark is not ours
        return base64.b64encode(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))).decode() or None
    except (binascii.Error, ValueError):
        return None


def tool_result(msg, i, names):
    """A tool message as a functionResponse named after the assistant call it answers."""
    name = names.get(msg.get("tool_call_id")) or msg.get("name")
    if not name:
        raise InvalidRequest("tool message does not answer an earlier assistant tool call",
                             param=f"messages[{i}].tool_call_id")
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(texts(content, f"messages[{i}].content"))
    response = parse_json(content.encode()) if isinstance(content, str) and content.lstrip()[:1] == "{" else None
    response = response if isinstance(response, dict) else {"content": content}  # Gemini wants an object
    return {"functionResponse": {"name": name, "response": response}}


def generation_config(body):
    config = {dst: body[src] for src, dst in CONFIG if body.get(src) is not None}
    limits = [body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    if limits:
        config["maxOutputTokens"] = limits[0]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    kind = fmt.get("type")
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if kind == "json_schema" and schema:
            config["responseSchema"] = to_schema(schema, "response_format.json_schema.schema", ordered=True)
    elif kind not in (None, "text"):
        raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format.type")
    return config


def function_declarations(tools):
    decls = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise InvalidRequest(f"Gemini deployments support only function tools, not {tool.get('type')!r}",
                                 param=f"tools[{i}].type")
        fn = tool.get("function") or {}
        decl = {"name": fn.get("name")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if isinstance(params, dict) and params.get("properties"):  # Gemini refuses an empty OBJECT
            decl["parameters"] = to_schema(params, f"tools[{i}].function.parameters")
        decls.append(decl)
    return [{"functionDeclarations": decls}]


def tool_config(choice):
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"functionCallingConfig": {"mode": TOOL_MODES[choice]}}
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if not name:
        raise InvalidRequest("tool_choice must be auto, required, none or a named function", param="tool_choice")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
