"""The mock provider's tool calls and structured answers: values built to validate against JSON schemas."""
import re
import uuid

import orjson

from deltallm.errors import InvalidRequest

MODES = ("first", "all", "always")
FORMATS = {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00Z",
           "email": "mock@example.com", "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000",
           "ipv4": "127.0.0.1", "ipv6": "::1", "hostname": "example.com", "duration": "P1D"}


def user_text(messages):
    return next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


def text_of(content):
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def calls(body, mode):
    """The tool_calls of a mock reply to `body` (none: []).

    Like a model: `tool_choice` "required" or a named function always calls (the named or first tool);
    otherwise, after a user turn, a prompt naming a tool calls it. `mode` (mock_tool_calls) adds
    `first` / `all` (after a user turn) and `always` (every turn); False turns calling off; a list of
    tool calls (LiteLLM's form) is answered as given after a user turn.
    """
    if isinstance(mode, list):
        messages = body.get("messages") or []
        return pinned(mode) if messages and messages[-1].get("role") == "user" else []
    if mode not in (None, False) and mode not in MODES:
        raise InvalidRequest(f"mock_tool_calls must be one of {', '.join(MODES)} or a list of tool calls",
                             param="mock_tool_calls")
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function" and t.get("function")]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or mode is False:
        return []
    messages = body.get("messages") or []
    after_user = bool(messages) and messages[-1].get("role") == "user"
    text = user_text(messages)
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        chosen = [t for t in tools if t["name"] == named][:1] or tools[:1]
    elif mode == "all" and after_user:
        chosen = tools
    elif choice == "required" or mode == "always" or (mode == "first" and after_user):
        chosen = tools[:1]
    elif after_user:  # a prompt that names a tool asks for it
        chosen = [t for t in tools if re.search(rf"\b{re.escape(t['name'])}\b", text)][:1]
    else:
        chosen = []
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": t["name"], "arguments": orjson.dumps(example(t.get("parameters"), text)).decode()}}
            for t in chosen]


def pinned(given):
    """Pinned tool calls ({id?, function: {name, arguments: JSON text or object}}) as OpenAI tool_calls."""
    out = []
    for i, call in enumerate(given):
        fn = call.get("function") if isinstance(call, dict) else None
        arguments = fn.get("arguments", {}) if isinstance(fn, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(arguments, (str, dict)):
            raise InvalidRequest("each pinned tool call needs function.name and function.arguments (a JSON "
                                 "string or object)", param=f"mock_tool_calls[{i}]")
        out.append({"id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                    "function": {"name": fn["name"], "arguments": arguments if isinstance(arguments, str)
                                 else orjson.dumps(arguments).decode()}})
    return out


def structured(body, text):
    """The JSON answer a `response_format` of json_schema / json_object asks for, or None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return orjson.dumps(example(schema, text, root=schema)).decode()
    if response_format.get("type") == "json_object":
        return orjson.dumps({"response": text or "mock"}).decode()
    return None


def resolve(schema, root):
    """`schema` with a local `$ref` (#/$defs/X, #/definitions/X, as pydantic and zod write them) followed."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    target = root
    for key in ref[1:].strip("/").split("/") if ref != "#" else []:
        target = target.get(key) if isinstance(target, dict) else None
    return target if isinstance(target, dict) else {}


def example(schema, text, depth=0, root=None):
    """A value valid against a JSON schema of the kinds clients send (objects, arrays, enums, refs,
    anyOf/oneOf/allOf, string formats and lengths, number bounds): defaults first, strings from `text`."""
    if not isinstance(schema, dict) or depth > 12:
        return {}
    root = schema if root is None else root
    schema = resolve(schema, root)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):  # the first non-null branch: Optional[X] comes back as an X
        branches = [b for b in schema.get(key) or [] if isinstance(b, dict)]
        if branches:
            pick = next((b for b in branches if resolve(b, root).get("type") != "null"), branches[0])
            return example(pick, text, depth + 1, root)
    if schema.get("allOf"):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged.update(resolve(part, root) if isinstance(part, dict) else {})
        return example(merged, text, depth + 1, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {name: example(props.get(name), text, depth + 1, root) for name in required}
    if kind == "array":
        count = max(schema.get("minItems") or 0, 1 if schema.get("items") else 0)
        if schema.get("maxItems") is not None:
            count = min(count, schema["maxItems"])
        return [example(schema.get("items"), text, depth + 1, root) for _ in range(count)]
    if kind in ("integer", "number"):
        return number(schema, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return string(schema, text)


def number(schema, kind):
    """1, or the lowest value the bounds allow (halfway between exclusive bounds closer than 1)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is None and schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + 1
    if high is None and schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - 1
    value = low if low is not None else (min(1, high) if high is not None else 1)
    if high is not None and value > high:  # exclusive bounds less than 2 apart
        value = (schema.get("exclusiveMinimum", low) + schema.get("exclusiveMaximum", high)) / 2
    return int(value) if kind == "integer" else value


def string(schema, text):
    value = FORMATS.get(schema.get("format")) or text or "mock"
    if schema.get("pattern"):  # no generator for arbitrary patterns: the text only if it happens to match
        if not re.search(schema["pattern"], value):
            value = "mock"
    if schema.get("maxLength") is not None:
        value = value[:schema["maxLength"]]
    if len(value) < (schema.get("minLength") or 0):
        value += "x" * (schema["minLength"] - len(value))
    return value
