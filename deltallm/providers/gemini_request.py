"""OpenAI chat requests as Gemini GenerateContentRequests (turns, parts, tools, generation config)."""
import mimetypes

from deltallm.errors import InvalidRequest
from deltallm.providers.base import parse_json
from deltallm.providers.gemini_config import generation, generation_config
from deltallm.providers.gemini_schema import to_schema
from deltallm.providers.gemini_signatures import FOREIGN_SIGNATURE, signature_for

TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def to_request(deployment, body):
    """An OpenAI chat-completions body as a GenerateContentRequest (unsupported fields dropped)."""
    system, contents = convert_messages(body.get("messages") or [], generation(deployment.model) >= 3)
    config = generation_config(deployment.model, body, system)
    payload = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        payload["tools"] = function_declarations(body["tools"])
        if body.get("tool_choice") is not None:
            payload["toolConfig"] = tool_config(body["tool_choice"])
    if config:
        payload["generationConfig"] = config
    if deployment.params.get("safety_settings"):
        payload["safetySettings"] = deployment.params["safety_settings"]
    return payload


def convert_messages(messages, signed=False):
    """(systemInstruction parts, contents): Gemini wants alternating user/model turns; `signed`: the
    model (Gemini 3) refuses a step's first functionCall without a thought signature."""
    system, turns, names = [], [], {}
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
            continue
        if role == "user":
            gem_role, parts = "user", user_parts(msg.get("content"), i)
        elif role == "assistant":
            gem_role, parts = "model", assistant_parts(msg, i, names, signed)
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


def assistant_parts(msg, i, names, signed):
    """Text and functionCall parts; reasoning_content is not sent back (the signatures carry the thoughts)."""
    parts = [{"text": t} for t in texts(msg.get("content"), f"messages[{i}].content")]
    for k, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        names[call.get("id")] = fn.get("name")
        args = parse_arguments(fn.get("arguments"), f"messages[{i}].tool_calls[{k}].function.arguments")
        part = {"functionCall": {"name": fn.get("name"), "args": args}}
        signature = signature_for(call.get("id"))
        if signature != FOREIGN_SIGNATURE or (signed and k == 0):
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def parse_arguments(arguments, param):
    args = parse_json(arguments.encode()) if isinstance(arguments, str) and arguments else arguments or {}
    if not isinstance(args, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return args


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
