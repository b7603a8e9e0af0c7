"""The MCP tool loop of a chat request: each model turn through the router, the model's MCP calls run
against their servers (in parallel), their results fed back as `tool` messages, until the model answers
without MCP calls."""
import time
from concurrent.futures import ThreadPoolExecutor

import orjson

from deltallm.errors import InvalidRequest
from deltallm.mcp.errors import RpcError
from deltallm.mcp.registry import Visibility
from deltallm.mcp.tools import McpTools, entries, is_mcp


class Limits:
    def __init__(self, general):
        self.turns = general["mcp_max_turns"]
        self.calls = general["mcp_max_tool_calls"]
        self.output_bytes = int(general["mcp_max_tool_output_kb"] * 1024)


def check_request(body):
    """The MCP tool entries of a chat body ([] when it has none); 400 for what the loop cannot serve."""
    found = entries(body.get("tools"))
    if found and body.get("stream"):
        raise InvalidRequest("MCP tools are not supported with stream: true; send the request without "
                             "streaming.", param="stream", code="unsupported_value")
    if found and (body.get("n") or 1) > 1:
        raise InvalidRequest("MCP tools need n = 1: the gateway runs one conversation's tool calls.",
                             param="n", code="unsupported_value")
    return found


def run(router, call, body, found, registry, principal, limits, max_calls=None):
    """(final chat.completion with `usage` summed over every turn, [executed MCP calls])."""
    others = [t for t in body["tools"] if not is_mcp(t)]
    taken = {(t.get("function") or {}).get("name") for t in others}
    mcp = McpTools(found, registry, Visibility(principal), taken, call.deadline)
    tools = others + mcp.functions
    turn_body = {k: v for k, v in body.items() if k != "tools"}
    if tools:
        turn_body["tools"] = tools
    elif "tool_choice" in turn_body:  # no tool left to offer (every MCP entry filtered to nothing)
        turn_body.pop("tool_choice")
    messages, executed = list(body["messages"]), []
    max_calls = min(limits.calls, max_calls or limits.calls)
    for turn in range(1, limits.turns + 1):
        request = dict(turn_body, messages=messages)
        completion = router.run(call, body["model"], lambda d, request=request: d.adapter.chat(call, request))
        call.answered = True  # this turn is paid for, whatever happens to the loop later
        message = ((completion.get("choices") or [{}])[0]).get("message") or {}
        calls = message.get("tool_calls") or []
        mine = [c for c in calls if (c.get("function") or {}).get("name") in mcp.by_name]
        if not mine or len(mine) < len(calls):
            # the answer, or a call of the client's own functions: the client gets this turn as it is,
            # minus MCP calls of the same turn (not run: the client answers its calls first)
            if mine:
                message["tool_calls"] = [c for c in calls if c not in mine]
            if call.usage is not None:
                completion["usage"] = dict(completion.get("usage") or {}, **call.usage)
            return completion, executed, mcp
        if turn == limits.turns:
            raise InvalidRequest(f"The model still called MCP tools after {limits.turns} turns, the most one "
                                 "request may take (general_settings.mcp_max_turns).", code="mcp_max_turns")
        if len(executed) + len(mine) > max_calls:
            raise InvalidRequest(f"The model asked for more than {max_calls} MCP tool calls, the most one request "
                                 "may make (general_settings.mcp_max_tool_calls, or the request's max_tool_calls).",
                                 code="mcp_max_tool_calls")
        results = execute(call, mcp, mine, limits.output_bytes)
        executed += results
        messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": mine})
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": r["for_model"]}
                     for c, r in zip(mine, results)]
        if isinstance(turn_body.get("tool_choice"), dict) or turn_body.get("tool_choice") == "required":
            turn_body["tool_choice"] = "auto"  # a forced call is the first turn's; later turns may answer
    raise AssertionError("unreachable")


def execute(call, mcp, calls, output_bytes):
    """Run the model's MCP calls at once; a server fault (down, slow, garbage) ends the request."""
    started = time.perf_counter()

    def one(tool_call):
        server, tool = mcp.by_name[tool_call["function"]["name"]]
        arguments = tool_call["function"].get("arguments") or "{}"
        record = {"server": server.key, "name": tool, "arguments": arguments, "output": None, "error": None}
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            record["error"] = {"type": "mcp_protocol_error", "code": -32602,
                               "message": "the arguments are not a JSON object"}
            record["for_model"] = "Error: the tool's arguments must be a JSON object."
            return record
        try:
            result = server.client.call_tool(tool, parsed, call.deadline)
        except RpcError as exc:  # the server refused the call (bad arguments ...): the model may retry
            record["error"] = {"type": "mcp_protocol_error", "code": exc.code, "message": exc.message}
            record["for_model"] = cap(f"Error from MCP server '{server.key}': {exc.message}", output_bytes)
            return record
        text = cap(result_text(result), output_bytes)
        if result.get("isError"):
            record["error"] = {"type": "mcp_tool_execution_error", "content": result.get("content") or []}
            record["for_model"] = f"Error: {text}"
        else:
            record["output"] = record["for_model"] = text
        return record
    try:
        if len(calls) == 1:
            return [one(calls[0])]
        with ThreadPoolExecutor(max_workers=min(len(calls), 8)) as pool:  # green threads under gevent
            return list(pool.map(one, calls))
    finally:
        call.upstream_s += time.perf_counter() - started  # tool time is not the gateway's overhead


def result_text(result):
    """A tools/call result as text for the model: its text content; structured content as JSON."""
    parts = []
    for item in result.get("content") or []:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind == "resource":
            resource = item.get("resource") or {}
            parts.append(resource["text"] if isinstance(resource.get("text"), str)
                         else f"[resource {resource.get('uri', '')}]")
        elif kind == "resource_link":
            parts.append(f"[resource {item.get('uri', '')}]")
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} content ({item.get('mimeType', 'unknown type')}) not shown]")
    if result.get("structuredContent") is not None and not parts:
        parts.append(orjson.dumps(result["structuredContent"]).decode())
    return "\n".join(parts)


def cap(text, limit):
    """At most `limit` bytes of UTF-8, with a marker saying how much was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    kept = data[:limit].decode(errors="ignore")
    return f"{kept}\n[truncated by DeltaLLM: {len(data) - len(kept.encode())} more bytes; the limit is " \
           f"{limit} bytes (general_settings.mcp_max_tool_output_kb)]"
