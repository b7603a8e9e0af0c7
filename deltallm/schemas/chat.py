"""Chat completions request schema: checks what the gateway relies on; unknown fields pass through."""
from marshmallow import INCLUDE, Schema, ValidationError, validates

from deltallm.schemas.common import StrictBool, StrictDict, StrictList, StrictNumber, StrictString

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}


def check_content(content, where, role):
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise ValidationError({where: ["must be a string or an array of content parts"]})
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str) or kind not in PART_TYPES:
            raise ValidationError({f"{where}[{j}].type": [
                f"must be one of {', '.join(sorted(PART_TYPES))}"]})
        if kind == "image_url" and role != "user":
            raise ValidationError({f"{where}[{j}].type": ["image parts are only allowed in user messages"]})
        require(part, PART_FIELDS[kind], f"{where}[{j}]")


def require(obj, specs, where=""):
    """Raise a ValidationError naming the first of `specs` (path in obj, check, description) obj fails."""
    for path, check, label in specs:
        value = obj
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        if not check(value):
            raise ValidationError({".".join((where,) + path if where else path): [f"must be {label}"]})


def is_str(value):
    return isinstance(value, str)


def is_name(value):
    return isinstance(value, str) and bool(value)


def is_dict(value):
    return isinstance(value, dict)


def optional_str(value):
    return value is None or isinstance(value, str)


def optional_dict(value):
    return value is None or isinstance(value, dict)


def optional_bool(value):
    return value is None or isinstance(value, bool)


# What each object must carry, as OpenAI checks it: (path in the object, check, description).
# Providers translate these objects by these paths, so a wrong shape is a 400 here, not their crash.
PART_FIELDS = {
    "text": [(("text",), is_str, "a string")],
    "refusal": [(("refusal",), is_str, "a string")],
    "image_url": [(("image_url",), is_dict, "an object"), (("image_url", "url"), is_str, "a string"),
                  (("image_url", "detail"), optional_str, "a string")],
    "input_audio": [(("input_audio",), is_dict, "an object"), (("input_audio", "data"), is_str, "a string"),
                    (("input_audio", "format"), is_str, "a string")],
    "file": [(("file",), is_dict, "an object")] + [
        (("file", key), optional_str, "a string") for key in ("file_data", "file_id", "filename")],
}
FUNCTION_FIELDS = [(("function",), is_dict, "an object"), (("function", "name"), is_name, "a non-empty string"),
                   (("function", "description"), optional_str, "a string"),
                   (("function", "parameters"), optional_dict, "an object (a JSON Schema)"),
                   (("function", "strict"), optional_bool, "a boolean")]
NAMED_CHOICE = [(("function",), is_dict, "an object"), (("function", "name"), is_name, "a non-empty string")]
JSON_SCHEMA_FIELDS = [(("json_schema",), is_dict, "an object"), (("json_schema", "name"), is_name, "a non-empty string"),
                      (("json_schema", "description"), optional_str, "a string"),
                      (("json_schema", "schema"), optional_dict, "an object (a JSON Schema)"),
                      (("json_schema", "strict"), optional_bool, "a boolean")]


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
        require(tool, FUNCTION_FIELDS, f"[{i}]")
    elif not isinstance(tool.get("type"), str):
        raise ValidationError({f"[{i}].type": ["Missing data for required field."]})


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
            require(value, [(("type",), is_name, "a non-empty string")])
            if value["type"] == "function":
                require(value, NAMED_CHOICE)
            return value
        if value not in ("none", "auto", "required"):
            raise ValidationError("must be 'none', 'auto', 'required' or an object naming a tool")
        return value


class SamplingSchema(Schema):
    """Fields chat and legacy completions share, checked the same way in both."""

    class Meta:
        unknown = INCLUDE

    model = StrictString(required=True, non_empty=True)
    stream = StrictBool(allow_none=True)
    stream_options = StrictDict(allow_none=True)
    n = StrictNumber(minimum=1, maximum=128, integer=True, allow_none=True)
    temperature = StrictNumber(minimum=0, maximum=2, allow_none=True)
    top_p = StrictNumber(minimum=0, maximum=1, allow_none=True)
    max_tokens = StrictNumber(minimum=1, integer=True, allow_none=True)
    presence_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    frequency_penalty = StrictNumber(minimum=-2, maximum=2, allow_none=True)
    seed = StrictNumber(integer=True, allow_none=True)
    user = StrictString(allow_none=True)
    stop = StopField(allow_none=True)

    @validates("stream_options")
    def usage_flag_is_boolean(self, value, **kwargs):
        if value is not None and "include_usage" in value and not isinstance(value["include_usage"], bool):
            raise ValidationError({"include_usage": ["must be a boolean"]})


class ChatRequestSchema(SamplingSchema):
    messages = StrictList(required=True, non_empty=True, check=check_message)
    max_completion_tokens = StrictNumber(minimum=1, integer=True, allow_none=True)
    tools = StrictList(check=check_tool, allow_none=True)
    tool_choice = ToolChoiceField(allow_none=True)
    response_format = StrictDict(allow_none=True)
    parallel_tool_calls = StrictBool(allow_none=True)
    logprobs = StrictBool(allow_none=True)
    top_logprobs = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)
    metadata = StrictDict(allow_none=True)

    @validates("response_format")
    def known_format(self, value, **kwargs):
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValidationError({"type": ["must be one of text, json_object, json_schema"]})
        if value is not None and value["type"] == "json_schema":
            require(value, JSON_SCHEMA_FIELDS)


chat_request = ChatRequestSchema()
