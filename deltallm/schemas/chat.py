"""Chat completions request schema: checks what the gateway relies on; unknown fields pass through."""
from marshmallow import ValidationError

from deltallm.schemas.common import (MAX_TOKENS, FlatSchema, StrictBool, StrictDict, StrictList, StrictNumber,
                                     StrictString)

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}
TOOL_TYPES = ("function", "mcp")  # mcp entries are run by the gateway's own tool loop (deltallm/mcp)


def check_content(content, where, role):
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ValidationError({where: ["must be a string or an array of content parts"]})
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":  # by far the most common part: checked first, and directly
            if not isinstance(part.get("text"), str):
                raise ValidationError({f"{where}[{j}].text": ["must be a string"]})
            continue
        if not isinstance(kind, str) or kind not in PART_TYPES:
            raise ValidationError({f"{where}[{j}].type": [
                f"must be one of {', '.join(sorted(PART_TYPES))}"]})
        if kind == "image_url" and role != "user":
            raise ValidationError({f"{where}[{j}].type": ["image parts are only allowed in user messages"]})
        if kind == "refusal":
            check_keys(part, REFUSAL_KEYS, f"{where}[{j}]")
        else:  # image_url, input_audio and file parts hold an object under the key of their type
            check_object(part.get(kind), PART_KEYS[kind], f"{where}[{j}].{kind}")


# What the objects providers read must carry, as OpenAI checks them: (key, JSON type, required).
# Native adapters translate them key by key, so a wrong shape is a 400 here rather than their crash.
TYPE_NAMES = {str: "a string", dict: "an object", bool: "a boolean"}
REFUSAL_KEYS = (("refusal", str, True),)
PART_KEYS = {
    "image_url": (("url", str, True), ("detail", str, False)),
    "input_audio": (("data", str, True), ("format", str, True)),
    "file": (("file_data", str, False), ("file_id", str, False), ("filename", str, False)),
}
FUNCTION_KEYS = (("name", str, True), ("description", str, False), ("parameters", dict, False),
                 ("strict", bool, False))
NAMED_CHOICE_KEYS = (("name", str, True),)
JSON_SCHEMA_KEYS = (("name", str, True), ("description", str, False), ("schema", dict, False),
                    ("strict", bool, False))


def check_object(obj, keys, where):
    if not isinstance(obj, dict):
        raise ValidationError({where: ["must be an object"]})
    check_keys(obj, keys, where)


def check_keys(obj, keys, where):
    """Each (key, type, required) of `keys`: obj[key] has that JSON type, or is absent or null if optional."""
    for key, kind, required in keys:
        value = obj.get(key)
        if not isinstance(value, kind) and (required or value is not None):
            raise ValidationError({f"{where}.{key}" if where else key: [f"must be {TYPE_NAMES[kind]}"]})


def check_tool_calls(calls, where):
    if not isinstance(calls, list):
        raise ValidationError({where: ["must be an array"]})
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValidationError({f"{where}[{j}].function.name": ["must be a string"]})
        if not isinstance(call.get("id"), str):
            raise ValidationError({f"{where}[{j}].id": ["must be a string"]})


def check_message(i, m):
    where = f"[{i}]"  # relative to `messages`; the loader prefixes the field
    if not isinstance(m, dict):
        raise ValidationError({where: ["must be an object"]})
    role = m.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError({f"{where}.role": [f"must be one of {', '.join(sorted(ROLES))}"]})
    content = m.get("content")
    if role == "assistant":
        if m.get("tool_calls") is not None:
            check_tool_calls(m["tool_calls"], f"{where}.tool_calls")
        elif content is None and m.get("function_call") is None and m.get("refusal") is None:
            raise ValidationError({f"{where}.content": [
                "is required unless tool_calls or function_call is specified"]})
        if content is not None:
            check_content(content, f"{where}.content", role)
        return
    if content is None:
        raise ValidationError({f"{where}.content": ["Missing data for required field."]})
    check_content(content, f"{where}.content", role)
    if role == "tool" and not isinstance(m.get("tool_call_id"), str):
        raise ValidationError({f"{where}.tool_call_id": ["Missing data for required field."]})


def check_tool(i, tool):
    if not isinstance(tool, dict):
        raise ValidationError({f"[{i}]": ["must be an object"]})
    if tool.get("type") == "function":
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValidationError({f"[{i}].function.name": ["Missing data for required field."]})
        check_keys(fn, FUNCTION_KEYS, f"[{i}].function")
    elif not isinstance(tool.get("type"), str):
        raise ValidationError({f"[{i}].type": ["Missing data for required field."]})
    elif tool["type"] not in TOOL_TYPES:  # every provider, the mock included, would drop or misread it
        raise ValidationError({f"[{i}].type": [f"must be one of {', '.join(TOOL_TYPES)}"]})


class StopField(StrictString):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            if len(value) > 4 or not all(isinstance(v, str) for v in value):
                raise ValidationError("must be a string or an array of at most 4 strings")
            return value
        return super()._deserialize(value, attr, data, **kwargs)


class ToolChoiceField(StrictString):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            check_keys(value, (("type", str, True),), "")
            if value["type"] == "function":
                check_object(value.get("function"), NAMED_CHOICE_KEYS, "function")
        elif value not in ("none", "auto", "required"):
            raise ValidationError("must be 'none', 'auto', 'required' or an object naming a tool")
        # As OpenAI: a choice that forces a tool call needs tools (adapters would drop it silently).
        if value != "none" and value != "auto" and not data.get("tools"):
            raise ValidationError("forcing a tool call ('required' or a named function) is only allowed "
                                  "when 'tools' are specified")
        return value


class StreamOptionsField(StrictDict):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if "include_usage" in value and not isinstance(value["include_usage"], bool):
            raise ValidationError({"include_usage": ["must be a boolean"]})
        return value


class ResponseFormatField(StrictDict):
    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValidationError({"type": ["must be one of text, json_object, json_schema"]})
        if value["type"] == "json_schema":
            check_object(value.get("json_schema"), JSON_SCHEMA_KEYS, "json_schema")
        return value


class SamplingSchema(FlatSchema):
    """Fields chat and legacy completions share, checked the same way in both."""

    model = StrictString(required=True, non_empty=True)
    stream = StrictBool(allow_none=True)
    stream_options = StreamOptionsField(allow_none=True)
    n = StrictNumber(minimum=1, maximum=128, integer=True, allow_none=True)
    temperature = StrictNumber(minimum=0, maximum=2, allow_none=True)
    top_p = StrictNumber(minimum=0, maximum=1, allow_none=True)
    max_tokens = StrictNumber(minimum=1, maximum=MAX_TOKENS, integer=True, allow_none=True)
    presence_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    frequency_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    seed = StrictNumber(integer=True, allow_none=True)
    user = StrictString(allow_none=True)
    stop = StopField(allow_none=True)


class ChatRequestSchema(SamplingSchema):
    messages = StrictList(required=True, non_empty=True, check=check_message)
    max_completion_tokens = StrictNumber(minimum=1, maximum=MAX_TOKENS, integer=True, allow_none=True)
    tools = StrictList(check=check_tool, allow_none=True)
    tool_choice = ToolChoiceField(allow_none=True)
    response_format = ResponseFormatField(allow_none=True)
    parallel_tool_calls = StrictBool(allow_none=True)
    logprobs = StrictBool(allow_none=True)
    top_logprobs = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)
    metadata = StrictDict(allow_none=True)


chat_request = ChatRequestSchema()
