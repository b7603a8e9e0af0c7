"""The Responses API over chat: request to chat body, and chat completion to Response object."""
import base64
import binascii
import time
import uuid

import orjson

from deltallm.errors import InvalidRequest

# Request fields with the same name and meaning in chat completions.
PASSED = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key",
          "prompt_cache_retention", "service_tier")
# Fields echoed back in the Response as the client sent them: always (OpenAI's default when absent), or if sent.
ECHOED = {"instructions": None, "max_output_tokens": None, "max_tool_calls": None, "temperature": 1,
          "top_p": 1, "top_logprobs": 0, "user": None, "safety_identifier": None, "prompt_cache_key": None}
ECHOED_IF_SENT = ("prompt_cache_retention",)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


# `encrypted_content` of the reasoning items this gateway returns: the provider's signed thinking blocks
# (Anthropic's signatures guard them), encoded, not encrypted; sent back in `input`, they continue a
# tool loop with thinking on. The prefix tells them from other services' reasoning items.
REASONING_PREFIX = "dlt1:"


def new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex}"


def encode_reasoning(blocks):
    return REASONING_PREFIX + base64.urlsafe_b64encode(orjson.dumps(blocks)).decode() if blocks else None


def decode_reasoning(value, param):
    """The thinking blocks of a reasoning input item's `encrypted_content`; [] for other services' items,
    whose reasoning no other provider can read."""
    if not isinstance(value, str) or not value.startswith(REASONING_PREFIX):
        return []
    try:
        blocks = orjson.loads(base64.urlsafe_b64decode(value[len(REASONING_PREFIX):]))
    except (binascii.Error, ValueError):
        blocks = None
    if not isinstance(blocks, list):
        raise InvalidRequest("encrypted_content is not a reasoning item this gateway returned", param=param)
    return blocks


# -- request ----------------------------------------------------------------------------------
def to_chat(req):
    """The chat completions body for a validated Responses request (see schemas/responses.py)."""
    messages = [{"role": "system", "content": req["instructions"]}] if req.get("instructions") else []
    body = {"model": req["model"], "messages": messages + input_messages(req["input"])}
    for name in PASSED:
        if req.get(name) is not None:
            body[name] = req[name]
    # max_completion_tokens, like max_output_tokens, counts reasoning tokens; OpenAI's reasoning
    # models refuse max_tokens, and every native adapter reads max_completion_tokens first.
    if req.get("max_output_tokens") is not None:
        body["max_completion_tokens"] = req["max_output_tokens"]
    tools = [chat_tool(tool) for tool in req.get("tools") or []]  # MCP entries stay MCP entries
    if tools:  # chat upstreams refuse tool_choice / parallel_tool_calls without tools
        body["tools"] = tools
        if req.get("tool_choice") is not None:
            body["tool_choice"] = chat_tool_choice(req["tool_choice"])
        if req.get("parallel_tool_calls") is not None:
            body["parallel_tool_calls"] = req["parallel_tool_calls"]
    text = req.get("text") or {}
    if (text.get("format") or {}).get("type") in ("json_object", "json_schema"):
        body["response_format"] = chat_format(text["format"])
    if text.get("verbosity") is not None:
        body["verbosity"] = text["verbosity"]
    effort = (req.get("reasoning") or {}).get("effort")
    if effort is not None:
        body["reasoning_effort"] = effort
    if wants_logprobs(req):
        body["logprobs"] = True
        if req.get("top_logprobs"):
            body["top_logprobs"] = req["top_logprobs"]
    if req.get("stream"):
        body["stream"] = True
    return body


def input_messages(value):
    """Chat messages for `input`: a string, or message / function_call / function_call_output items."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages, thinking = [], []  # thinking: blocks of reasoning items, for the next assistant turn
    for i, item in enumerate(value):
        kind = item.get("type", "message")
        if kind == "reasoning":
            thinking += decode_reasoning(item.get("encrypted_content"), f"input[{i}].encrypted_content")
        elif kind == "message":
            messages.append(chat_message(item))
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not thinking:  # one turn, many calls
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:  # function_call_output
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": tool_output(item["output"])})
        if thinking and kind != "reasoning" and messages and messages[-1]["role"] == "assistant":
            messages[-1]["thinking_blocks"], thinking = thinking, []
    return messages


def chat_message(item):
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "assistant":
        return {"role": "assistant",
                "content": "".join(p.get("text") or p.get("refusal") or "" for p in content)}
    return {"role": role, "content": [chat_part(part) for part in content]}


def chat_part(part):
    if part["type"] == "input_text":
        return {"type": "text", "text": part["text"]}
    image = {"url": part["image_url"]}
    if part.get("detail") is not None:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def tool_output(output):
    return output if isinstance(output, str) else "".join(part["text"] for part in output)


def chat_tool(tool):
    if tool["type"] == "mcp":  # run by the gateway's tool loop (mcp/loop.py), in chat's own shape
        entry = dict(tool)
        if "server_label" in entry:
            entry["server"] = entry.pop("server_label")
        return entry
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": fn}


def chat_tool_choice(choice):
    return choice if isinstance(choice, str) else {"type": "function", "function": {"name": choice["name"]}}


def chat_format(fmt):
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}


def wants_logprobs(req):
    return "message.output_text.logprobs" in (req.get("include") or ()) or bool(req.get("top_logprobs"))


# -- response ---------------------------------------------------------------------------------
def as_applied(req, adapter):
    """`req` as the upstream applied it: a reasoning effort the answering provider does not apply
    (see Provider.applies_reasoning_effort) is not echoed as if it were."""
    if (req.get("reasoning") or {}).get("effort") is None or getattr(adapter, "applies_reasoning_effort", False):
        return req
    return dict(req, reasoning=dict(req["reasoning"], effort=None))


def skeleton(req):
    """An in-progress Response with every field OpenAI's carries, echoing the request's settings or
    OpenAI's defaults (nothing is stored: store is false; usage is null until known)."""
    reasoning = req.get("reasoning") or {}
    text = {"format": (req.get("text") or {}).get("format") or {"type": "text"}}
    if (req.get("text") or {}).get("verbosity") is not None:
        text["verbosity"] = req["text"]["verbosity"]
    resp = {"id": new_id("resp"), "object": "response", "created_at": int(time.time()),
            "status": "in_progress", "completed_at": None,
            "background": False, "error": None, "incomplete_details": None, "model": req["model"],
            "output": [], "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
            "previous_response_id": None,
            "reasoning": {"effort": reasoning.get("effort"),
                          "summary": reasoning.get("summary", reasoning.get("generate_summary"))},
            "store": False, "text": text, "tool_choice": req.get("tool_choice") or "auto",
            "tools": [echo_tool(tool) for tool in req.get("tools") or []],
            "truncation": "disabled", "metadata": req.get("metadata") or {},
            "presence_penalty": 0, "frequency_penalty": 0, "usage": None,
            # "auto" is answered with the tier that served the request: the upstream's default
            "service_tier": req["service_tier"] if req.get("service_tier") not in (None, "auto") else "default"}
    for name, default in ECHOED.items():
        resp[name] = req[name] if req.get(name) is not None else default
    resp.update({name: req[name] for name in ECHOED_IF_SENT if req.get(name) is not None})
    return resp


def echo_tool(tool):
    if tool["type"] == "mcp":
        allowed = tool.get("allowed_tools")
        return {"type": "mcp", "server_label": tool.get("server_label", tool.get("server")),
                "allowed_tools": allowed, "require_approval": "never"}
    out = {"type": "function", "name": tool["name"], "parameters": tool.get("parameters"),
           "strict": tool.get("strict")}
    if tool.get("description") is not None:
        out["description"] = tool["description"]
    return out


def finish(resp, *, model, output, finish_reason, usage):
    """Fill in the outcome of a finished generation (status from the chat finish_reason)."""
    reason = INCOMPLETE.get(finish_reason)
    resp.update(status="incomplete" if reason else "completed", output=output,
                incomplete_details={"reason": reason} if reason else None,
                completed_at=None if reason else int(time.time()))
    if usage:  # otherwise null, as in OpenAI's events before the usage is known
        resp["usage"] = responses_usage(usage)
    if model:
        resp["model"] = model
    return resp


def responses_usage(usage):
    prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": details.get("cached_tokens") or 0,
                                     "cache_write_tokens": details.get("cache_write_tokens") or 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage.get("total_tokens") or prompt + completion}


def from_completion(completion, req):
    """A chat.completion (first choice) as a Response object."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    status = "incomplete" if choice.get("finish_reason") in INCOMPLETE else "completed"
    parts = []
    if message.get("content"):
        logprobs = (choice.get("logprobs") or {}).get("content") if wants_logprobs(req) else None
        parts.append(text_part(message["content"], logprobs or []))
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    output = [message_item(parts, status)] if parts else []
    if message.get("reasoning_content") or message.get("thinking_blocks"):
        output.insert(0, reasoning_item(message.get("reasoning_content"), message.get("thinking_blocks"), status))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        output.append(function_item(call.get("id"), fn.get("name"), fn.get("arguments") or "", status))
    return finish(skeleton(req), model=completion.get("model"), output=output,
                  finish_reason=choice.get("finish_reason"), usage=completion.get("usage"))


def text_part(text="", logprobs=()):
    """An output_text part; `logprobs` are chat's logprobs.content items, which have the Responses shape."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": list(logprobs)}


def reasoning_item(text, blocks, status):
    """A `reasoning` output item for a chat message's reasoning_content and thinking_blocks."""
    return {"id": new_id("rs"), "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else [],
            "encrypted_content": encode_reasoning(blocks), "status": status}


def message_item(content, status):
    return {"id": new_id("msg"), "type": "message", "status": status, "role": "assistant",
            "content": content}


def function_item(call_id, name, arguments, status):
    return {"id": new_id("fc"), "type": "function_call", "status": status,
            "call_id": call_id or new_id("call"), "name": name or "", "arguments": arguments}


def mcp_items(listed, executed):
    """OpenAI's MCP output items: one `mcp_list_tools` per server offered, one `mcp_call` per call run."""
    items = [{"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": key, "error": None,
              "tools": [{"name": t["name"], "description": t.get("description"),
                         "input_schema": t.get("inputSchema") or {"type": "object"},
                         "annotations": t.get("annotations")} for t in tools]}
             for key, tools in listed]
    for record in executed:
        items.append({"id": new_id("mcp"), "type": "mcp_call", "server_label": record["server"],
                      "name": record["name"], "arguments": record["arguments"], "output": record["output"],
                      "error": record["error"], "status": "failed" if record["error"] else "completed",
                      "approval_request_id": None})
    return items
