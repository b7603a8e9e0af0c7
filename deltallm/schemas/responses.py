"""Responses API request schema: the subset DeltaLLM translates to chat; anything else is a 400 naming it."""
from marshmallow import RAISE, Schema, pre_load, validates, validates_schema

from deltallm.errors import InvalidRequest
from deltallm.mcp import tools as mcp_tools
from deltallm.schemas.common import (MAX_TOKENS, Choice, StrictBool, StrictDict, StrictList, StrictNumber,
                                     StrictString)

ROLES = ("user", "system", "developer", "assistant")
PARTS = {"user": ("input_text", "input_image"), "system": ("input_text",),
         "developer": ("input_text",), "assistant": ("output_text", "refusal")}
ITEMS = ("message", "function_call", "function_call_output", "reasoning")
# Accepted only with these "off" values: each needs state or a feature the chat translation lacks.
OFF = {
    "previous_response_id": (None,), "conversation": (None,), "prompt": (None,),
    "background": (None, False),
    "moderation": (None,), "context_management": (None,), "prompt_cache_options": (None,),
}
WHY = {
    "previous_response_id": "DeltaLLM stores no responses; send the whole conversation in `input`",
    "conversation": "DeltaLLM stores no conversations; send the whole conversation in `input`",
    "prompt": "DeltaLLM has no stored prompts; send `instructions` and `input`",
    "background": "background responses need stored responses, which DeltaLLM does not keep",
}


def is_off(value, off):
    """value is the "off" value `off`; `background: 0` or `top_logprobs: false` are type errors, not off."""
    return value is off or (value == off and isinstance(value, bool) == isinstance(off, bool))


def invalid(path, message):
    raise InvalidRequest(f"Invalid value for '{path}': {message}", param=path)


def unsupported(path, message, code="unsupported_parameter"):
    raise InvalidRequest(message, param=path, code=code)


def check_type(value, kind, path, name):
    if not isinstance(value, kind):
        invalid(path, f"must be {name}")


def check_part(part, path, role):
    check_type(part, dict, path, "an object")
    kind = part.get("type")
    if kind in ("input_file", "input_audio") or kind == "input_image" and role != "user":
        where = "" if kind != "input_image" else " outside user messages"
        unsupported(f"{path}.type", f"Content parts of type '{kind}'{where} are not supported by "
                    "this gateway.", "unsupported_value")
    if kind not in PARTS[role]:
        invalid(f"{path}.type", f"{role} messages accept {', '.join(PARTS[role])} parts")
    if kind == "input_image":
        if part.get("file_id") is not None:
            unsupported(f"{path}.file_id", "Images by file_id are not supported by this gateway; "
                        "send image_url (a URL or a data: URL).")
        check_type(part.get("image_url"), str, f"{path}.image_url", "a string")
        if part.get("detail") not in (None, "auto", "low", "high"):
            invalid(f"{path}.detail", "must be one of auto, low, high")
    else:
        key = "refusal" if kind == "refusal" else "text"
        check_type(part.get(key), str, f"{path}.{key}", "a string")


def check_message(item, path):
    role = item.get("role")
    if role not in ROLES:
        invalid(f"{path}.role", f"must be one of {', '.join(ROLES)}")
    content = item.get("content")
    if isinstance(content, str):
        return
    check_type(content, list, f"{path}.content", "a string or an array of content parts")
    for j, part in enumerate(content):
        check_part(part, f"{path}.content[{j}]", role)


def check_item(i, item):
    """One `input` item; extra keys of round-tripped output items (id, status ...) are ignored."""
    path = f"input[{i}]"
    check_type(item, dict, path, "an object")
    kind = item.get("type", "message" if "role" in item else None)
    if kind not in ITEMS:
        unsupported(f"{path}.type", f"Input items of type {kind!r} are not supported by this gateway; "
                    f"supported: {', '.join(ITEMS)}.", "unsupported_value")
    if kind == "message":
        return check_message(item, path)
    if kind == "reasoning":  # translate/reasoning.py reads encrypted_content; summaries are the model's own
        if item.get("encrypted_content") is not None:
            check_type(item["encrypted_content"], str, f"{path}.encrypted_content", "a string")
        return
    check_type(item.get("call_id"), str, f"{path}.call_id", "a string")
    if kind == "function_call":
        check_type(item.get("name"), str, f"{path}.name", "a string")
        check_type(item.get("arguments"), str, f"{path}.arguments", "a string")
        return
    output = item.get("output")
    if isinstance(output, list):
        for j, part in enumerate(output):
            check_part(part, f"{path}.output[{j}]", "system")  # text parts only
    else:
        check_type(output, str, f"{path}.output", "a string or an array of input_text parts")


def check_tool(i, tool):
    path = f"tools[{i}]"
    check_type(tool, dict, path, "an object")
    kind = tool.get("type")
    if kind == "mcp":
        mcp_tools.entry(i, tool)  # checked in full by the MCP tool loop's own rules
        return
    if kind != "function":
        unsupported(f"{path}.type", f"Tools of type {kind!r} are not supported by this gateway; "
                    "only function tools are.", "unsupported_value")
    for key in tool:
        if key not in ("type", "name", "description", "parameters", "strict"):
            unsupported(f"{path}.{key}", f"Unsupported parameter: '{path}.{key}'.")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        invalid(f"{path}.name", "must be a non-empty string")
    for key, kind, label in (("description", str, "a string"), ("parameters", dict, "an object"),
                             ("strict", bool, "a boolean")):
        if tool.get(key) is not None:
            check_type(tool[key], kind, f"{path}.{key}", label)


def check_format(fmt):
    check_type(fmt, dict, "text.format", "an object")
    kind = fmt.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        invalid("text.format.type", "must be one of text, json_object, json_schema")
    if kind == "json_schema":
        check_type(fmt.get("name"), str, "text.format.name", "a string")
        check_type(fmt.get("schema"), dict, "text.format.schema", "an object")
        if fmt.get("strict") is not None:
            check_type(fmt["strict"], bool, "text.format.strict", "a boolean")


# OpenAI's `include` values. Agent SDKs send some on every call: all are accepted; the gateway honours
# message.output_text.logprobs (chat logprobs) and ignores the rest, whose items it never produces.
INCLUDABLE = ("message.output_text.logprobs", "reasoning.encrypted_content", "file_search_call.results",
              "web_search_call.results", "web_search_call.action.sources", "message.input_image.image_url",
              "computer_call_output.output.image_url", "code_interpreter_call.outputs")
HONOURED = ("message.output_text.logprobs",)


def check_include(i, value):
    if value not in INCLUDABLE:
        invalid(f"include[{i}]", f"must be one of {', '.join(INCLUDABLE)}")


class ToolChoiceField(StrictString):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            if value.get("type") != "function":
                unsupported("tool_choice.type", "Only function tool choices are supported by this "
                            "gateway.", "unsupported_value")
            check_type(value.get("name"), str, "tool_choice.name", "a string")
            return value
        if value not in ("none", "auto", "required"):
            invalid("tool_choice", "must be 'none', 'auto', 'required' or {type: function, name}")
        return value


class InputField(StrictString):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            if not value:
                invalid("input", "must contain at least one item")
            for i, item in enumerate(value):
                check_item(i, item)
            return value
        return super()._deserialize(value, attr, data, **kwargs)


class ResponsesRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    model = StrictString(required=True, non_empty=True)
    input = InputField(required=True)
    instructions = StrictString(allow_none=True)
    max_output_tokens = StrictNumber(minimum=16, maximum=MAX_TOKENS, integer=True, allow_none=True)
    max_tool_calls = StrictNumber(minimum=1, maximum=MAX_TOKENS, integer=True, allow_none=True)
    temperature = StrictNumber(minimum=0, maximum=2, allow_none=True)
    top_p = StrictNumber(minimum=0, maximum=1, allow_none=True)
    user = StrictString(allow_none=True)
    safety_identifier = StrictString(allow_none=True)
    prompt_cache_key = StrictString(allow_none=True)
    prompt_cache_retention = Choice(("in_memory", "24h"), allow_none=True)
    service_tier = Choice(("auto", "default", "flex", "scale", "priority"), allow_none=True)
    metadata = StrictDict(allow_none=True)
    parallel_tool_calls = StrictBool(allow_none=True)
    tools = StrictList(check=check_tool, allow_none=True)
    tool_choice = ToolChoiceField(allow_none=True)
    text = StrictDict(allow_none=True)
    reasoning = StrictDict(allow_none=True)
    store = StrictBool(allow_none=True)
    stream = StrictBool(allow_none=True)
    stream_options = StrictDict(allow_none=True)
    truncation = Choice(("auto", "disabled"), allow_none=True)
    include = StrictList(check=check_include, allow_none=True)
    top_logprobs = StrictNumber(minimum=0, maximum=20, integer=True, allow_none=True)

    @pre_load
    def known_and_supported(self, data, **kwargs):
        for name, value in data.items():
            if name not in self.fields and name not in OFF:
                unsupported(name, f"Unknown parameter: '{name}'.", "unknown_parameter")
            if name in OFF and not any(is_off(value, off) for off in OFF[name]):
                unsupported(name, f"Unsupported parameter: '{name}'"
                            f"{': ' + WHY[name] if name in WHY else ' is not supported by this gateway'}.")
        if data.get("truncation") == "auto":
            unsupported("truncation", "truncation 'auto' is not supported by this gateway; use "
                        "'disabled'.", "unsupported_value")
        return {k: v for k, v in data.items() if k not in OFF}

    @validates("metadata")
    def metadata_shape(self, value, **kwargs):
        if value is None:
            return
        if len(value) > 16:
            invalid("metadata", "must have at most 16 keys")
        for key, item in value.items():
            if len(key) > 64 or not isinstance(item, str) or len(item) > 512:
                invalid(f"metadata.{key}", "keys must be at most 64 characters and values strings "
                        "of at most 512")

    @validates("text")
    def text_shape(self, value, **kwargs):
        for key in value or {}:
            if key not in ("format", "verbosity"):
                unsupported(f"text.{key}", f"Unknown parameter: 'text.{key}'.", "unknown_parameter")
        if (value or {}).get("format") is not None:
            check_format(value["format"])
        if (value or {}).get("verbosity") not in (None, "low", "medium", "high"):
            invalid("text.verbosity", "must be one of low, medium, high")

    @validates("reasoning")
    def reasoning_shape(self, value, **kwargs):
        for key, item in (value or {}).items():
            if key not in ("effort", "summary", "generate_summary"):
                unsupported(f"reasoning.{key}", f"Unsupported parameter: 'reasoning.{key}'.")
            check_type(item, (str, type(None)), f"reasoning.{key}", "a string")
            if key != "effort" and item is not None:  # chat completions return no reasoning summary
                unsupported(f"reasoning.{key}", "Reasoning summaries are not supported by this gateway: "
                            "it serves responses through chat completions, which return none.")

    @validates("stream_options")
    def stream_options_shape(self, value, **kwargs):
        for key, item in (value or {}).items():
            if key != "include_obfuscation":  # only pads events against side channels; safe to skip
                unsupported(f"stream_options.{key}", f"Unknown parameter: 'stream_options.{key}'.",
                            "unknown_parameter")
            check_type(item, bool, f"stream_options.{key}", "a boolean")

    @validates_schema
    def tool_choice_needs_tools(self, data, **kwargs):
        choice = data.get("tool_choice")
        if (choice == "required" or isinstance(choice, dict)) and not data.get("tools"):
            invalid("tool_choice", f"{choice!r} needs at least one function in `tools`")


responses_request = ResponsesRequestSchema()
