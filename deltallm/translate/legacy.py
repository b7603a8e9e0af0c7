"""OpenAI's legacy `functions` / `function_call` / role "function" chat fields as tools, and back."""
from deltallm.errors import InvalidRequest

# Adapters whose upstream knows only tools: requests with the legacy fields are translated for them.
NATIVE_TOOLS_ONLY = ("anthropic", "gemini", "bedrock")


def uses_legacy(body):
    return "functions" in body or "function_call" in body


def to_tools(body):
    """A copy of `body` with functions as tools, function_call as tool_choice, and the history's
    assistant function_calls / role "function" results as tool_calls / tool messages (paired by name)."""
    out = {k: v for k, v in body.items() if k not in ("functions", "function_call")}
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list) or not all(isinstance(f, dict) and f.get("name") for f in functions):
            raise InvalidRequest("functions must be an array of objects with a name", param="functions")
        out["tools"] = list(out.get("tools") or []) + [{"type": "function", "function": f} for f in functions]
    choice = body.get("function_call")
    if choice is not None:
        if choice in ("none", "auto"):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and isinstance(choice.get("name"), str):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise InvalidRequest("function_call must be none, auto or {\"name\": ...}", param="function_call")
    out["messages"] = messages_with_tools(body.get("messages") or [])
    return out


def messages_with_tools(messages):
    messages, pending, count = list(messages), {}, 0
    for i, msg in enumerate(messages):
        call = msg.get("function_call") if msg.get("role") == "assistant" else None
        if isinstance(call, dict):
            count += 1
            call_id = f"call_function_{count}"
            pending[call.get("name")] = call_id
            messages[i] = {k: v for k, v in msg.items() if k != "function_call"}
            messages[i]["tool_calls"] = [{"id": call_id, "type": "function", "function": {
                "name": call.get("name"), "arguments": call.get("arguments") or "{}"}}]
        elif msg.get("role") == "function":
            if msg.get("name") not in pending:
                raise InvalidRequest("a function message must answer an earlier assistant function_call "
                                     "of the same name", param=f"messages[{i}].name")
            messages[i] = {"role": "tool", "tool_call_id": pending.pop(msg["name"]),
                           "content": msg.get("content") or ""}
    return messages


def to_function_call(completion):
    """A chat.completion answering a `functions` request: its (first) tool call as `function_call`,
    finish_reason "function_call", as OpenAI answers."""
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        calls = message.pop("tool_calls", None)
        if calls:
            message["function_call"] = dict(calls[0]["function"])
            choice["finish_reason"] = "function_call"
    return completion


def chunks_as_function_call(chunks):
    """Streamed chunks of a `functions` request: tool call 0's deltas as `function_call` deltas."""
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            calls = delta.pop("tool_calls", None)
            first = [c for c in calls or [] if c.get("index", 0) == 0]
            if first:
                fn = first[0].get("function") or {}
                delta["function_call"] = {k: fn[k] for k in ("name", "arguments") if k in fn}
            if choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "function_call"
        yield chunk


def accepting_functions(cls):
    """`cls` with chat and chat_stream translating the legacy fields for an upstream that has only tools."""

    class LegacyFunctions(cls):
        def chat(self, call, body):
            if not uses_legacy(body):
                return super().chat(call, body)
            completion = super().chat(call, to_tools(body))
            return to_function_call(completion) if "functions" in body else completion

        def chat_stream(self, call, body):
            if not uses_legacy(body):
                return super().chat_stream(call, body)
            chunks = super().chat_stream(call, to_tools(body))
            return chunks_as_function_call(chunks) if "functions" in body else chunks

    LegacyFunctions.__name__ = LegacyFunctions.__qualname__ = cls.__name__
    return LegacyFunctions
