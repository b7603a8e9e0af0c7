"""The mock provider's tool calls: which function tools it calls, with arguments fitting their schemas."""
import uuid

import orjson

from deltallm.errors import InvalidRequest

MODES = ("first", "all", "always")


def calls(body, mode):
    """The tool_calls of a mock reply to `body` under `mode` (None or False: no calls)."""
    if mode in (None, False):
        return []
    if mode not in MODES:
        raise InvalidRequest(f"mock_tool_calls must be one of {', '.join(MODES)}", param="mock_tool_calls")
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function" and t.get("function")]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    messages = body.get("messages") or []
    if mode != "always" and (not messages or messages[-1].get("role") != "user"):
        return []
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if t["name"] == named] or tools
    chosen = tools if mode == "all" else tools[:1]
    text = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": t["name"], "arguments": orjson.dumps(example(t.get("parameters"), text)).decode()}}
            for t in chosen]


def example(schema, text, depth=0):
    """A value valid against a (simple) JSON schema: defaults, required properties filled, strings from `text`."""
    if not isinstance(schema, dict) or depth > 8:
        return {}
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {name: example(props.get(name), text, depth + 1) for name in required}
    if kind == "array":
        return [example(schema.get("items"), text, depth + 1)] if schema.get("minItems") else []
    if kind in ("integer", "number"):
        low = schema.get("minimum", 1)
        return int(low) if kind == "integer" else low
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text or "mock"
