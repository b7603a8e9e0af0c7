"""Anthropic Messages API adapter: OpenAI chat requests in, `/v1/messages` calls out, and back."""
import itertools
import time

import orjson

from deltallm.errors import InvalidRequest, UpstreamError
from deltallm.providers.base import Provider, error_message, iter_sse, map_status, parse_json

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Anthropic has no JSON mode; an instruction is the only portable lever (prefill is gone on new models).
JSON_OBJECT_INSTRUCTION = ("Respond with a single valid JSON object and nothing else: "
                           "no prose, no Markdown code fences.")
JSON_TOOL_DESCRIPTION = "Give the final answer by calling this tool; its input is the response."
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls",
          "refusal": "content_filter"}
# Used when an error arrives inside a 200 stream, where there is no HTTP status to go by.
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
                "api_error": 500, "overloaded_error": 529}


class AnthropicProvider(Provider):
    """Native Messages API; `api_base` includes the version segment and `/messages` is appended."""

    name = "anthropic"
    default_api_base = "https://api.anthropic.com/v1"

    def __init__(self, deployment):
        super().__init__(deployment)
        params = deployment.params
        self.headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if params.get("api_key"):
            self.headers["x-api-key"] = params["api_key"]
        # e.g. anthropic-beta flags; config-only, so clients still cannot steer upstream headers
        self.headers.update(params.get("extra_headers") or {})
        self.stream_headers = dict(self.headers, **{"accept": "text/event-stream",
                                                    "accept-encoding": "identity"})

    def chat(self, call, body):
        payload = to_request(self.deployment, body)
        resp = self.send(call, self.api_base + "/messages", payload, headers=self.headers)
        data = parse_json(resp.content)
        if not isinstance(data, dict):
            raise UpstreamError("anthropic upstream returned a body that is not a JSON object")
        return from_response(self.deployment, data, json_tool_name(body))

    def chat_stream(self, call, body):
        payload = to_request(self.deployment, body)
        payload["stream"] = True
        resp = self.send(call, self.api_base + "/messages", payload,
                         headers=self.stream_headers, stream=True)
        chunks = iter_stream(resp, StreamTranslator(self.deployment, json_tool_name(body)))
        # Pull the first chunk now so an error event sent right after the 200 (Anthropic reports
        # overload that way too) surfaces before the first byte, where it can still be retried.
        first = next(chunks, None)
        if first is None:
            raise UpstreamError("anthropic upstream closed the stream without any event")
        return itertools.chain([first], chunks)

    def map_error(self, status, body, headers):
        return anthropic_error(status, parse_json(body), headers.get("retry-after"))


def anthropic_error(status, payload, retry_after=None):
    """`{"type":"error","error":{"type","message"}}` (HTTP or in-stream) -> the SPEC §3 error."""
    default = f"anthropic upstream returned HTTP {status}" if status else "anthropic upstream stream error"
    message, etype, _code, _param = error_message(payload, default)
    if status is None:
        status = ERROR_STATUS.get(etype, 500)
    return map_status("anthropic", status, message, etype=etype, retry_after=retry_after)


# -- request ----------------------------------------------------------------------------------
def to_request(deployment, body):
    """The Messages API JSON for an (already validated) OpenAI chat-completions body."""
    if (body.get("n") or 1) > 1:
        raise InvalidRequest("Anthropic models return a single choice; n must be 1", param="n")
    system, messages = convert_messages(body.get("messages") or [])
    payload = {"model": deployment.model, "max_tokens": max_tokens(deployment, body),
               "messages": messages}
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        system.append(JSON_OBJECT_INSTRUCTION)
    if system:
        payload["system"] = "\n\n".join(system)
    stop = body.get("stop")
    if stop:
        payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            payload[key] = body[key]
    if body.get("user"):
        payload["metadata"] = {"user_id": str(body["user"])}
    tools, choice = convert_tools(body)
    if tools:
        payload["tools"] = tools
    if choice:
        payload["tool_choice"] = choice
    # Everything else (seed, logprobs, penalties, logit_bias ...) has no Messages API equivalent.
    return payload


def max_tokens(deployment, body):
    for value in (body.get("max_completion_tokens"), body.get("max_tokens"),
                  deployment.params.get("max_tokens")):
        if value is not None:
            return int(value)
    return DEFAULT_MAX_TOKENS  # Anthropic requires max_tokens; OpenAI clients usually omit it


def json_tool_name(body):
    """The forced tool that carries a json_schema response_format, or None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return None
    return (response_format.get("json_schema") or {}).get("name") or "json_response"


def convert_messages(messages):
    """(system texts, alternating user/assistant turns) from OpenAI messages."""
    system, turns = [], []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append(text)
            continue
        if role == "user":
            turn_role, blocks = "user", user_blocks(message.get("content"), f"messages[{i}].content")
        elif role == "assistant":
            turn_role, blocks = "assistant", assistant_blocks(message, i)
        elif role == "tool":
            turn_role, blocks = "user", [tool_result(message, i)]
        else:
            raise InvalidRequest(f"role {role!r} is not supported by Anthropic models",
                                 param=f"messages[{i}].role")
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty OpenAI message carries nothing
        # Anthropic requires strict user/assistant alternation, so same-role neighbours (notably
        # the results of parallel tool calls) become one turn.
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:  # a lone text block reads better (and is smaller) as a plain string
        if len(turn["content"]) == 1 and turn["content"][0]["type"] == "text":
            turn["content"] = turn["content"][0]["text"]
    return system, turns


def text_of(content):
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content
                         if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def user_blocks(content, where):
    if not isinstance(content, list):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), f"{where}[{j}].image_url.url"))
        elif kind == "file":
            blocks.append(document_block(part.get("file") or {}, f"{where}[{j}].file"))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Anthropic models",
                                 param=f"{where}[{j}].type")
    return blocks


def base64_source(url):
    """'data:image/png;base64,XXX' -> an Anthropic base64 source; None for anything else."""
    header, sep, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    fields = header.split(";")
    if sep and fields[0] and fields[-1] == "base64":
        return {"type": "base64", "media_type": fields[0], "data": data}
    return None


def image_block(ref, param):
    url = ref.get("url") if isinstance(ref, dict) else ref
    url = url if isinstance(url, str) else ""
    source = base64_source(url) or (
        {"type": "url", "url": url} if url.startswith(("https://", "http://")) else None)
    if not source:
        raise InvalidRequest("image_url.url must be an http(s) URL or a base64 data URL", param=param)
    return {"type": "image", "source": source}


def document_block(file, param):
    source = base64_source(file.get("file_data") or "")
    if not source or source["media_type"] != "application/pdf":
        # file_id refers to OpenAI's file store, which Anthropic cannot read
        raise InvalidRequest("Anthropic models accept files only as base64 PDF data URLs in file_data",
                             param=param)
    return {"type": "document", "source": source}


def assistant_blocks(message, i):
    text = text_of(message.get("content"))
    blocks = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        where = f"messages[{i}].tool_calls[{j}].function.arguments"
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("tool call arguments must be a JSON object", param=where) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("tool call arguments must be a JSON object", param=where)
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})
    return blocks


def tool_result(message, i):
    if not message.get("tool_call_id"):
        raise InvalidRequest("tool messages need tool_call_id", param=f"messages[{i}].tool_call_id")
    block = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    text = text_of(message.get("content"))
    if text:  # Anthropic rejects empty text blocks but accepts a result without content
        block["content"] = text
    return block


def convert_tools(body):
    """(Anthropic tools, tool_choice) from OpenAI tools, tool_choice, parallel_tool_calls and
    a json_schema response_format (a forced tool whose input is the structured answer)."""
    tools = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function":
            raise InvalidRequest(f"tool type {tool.get('type')!r} is not supported by Anthropic models",
                                 param=f"tools[{i}].type")
        function = tool.get("function") or {}
        converted = {"name": function.get("name"),
                     "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            converted["description"] = function["description"]
        tools.append(converted)
    choice = convert_tool_choice(body.get("tool_choice")) if tools else None
    name = json_tool_name(body)
    if name:
        if any(t["name"] == name for t in tools):
            raise InvalidRequest(f"response_format schema name {name!r} clashes with a tool name",
                                 param="response_format.json_schema.name")
        schema = body["response_format"].get("json_schema") or {}
        tools.append({"name": name, "description": schema.get("description") or JSON_TOOL_DESCRIPTION,
                      "input_schema": schema.get("schema") or {"type": "object"}})
        if len(tools) == 1 or (choice and choice["type"] == "none"):
            choice = {"type": "tool", "name": name}
        elif choice is None or choice["type"] == "auto":
            choice = {"type": "any"}  # call a real tool or answer through the schema tool, no prose
        # "any" already fits; a specifically forced client tool stays forced (explicit request)
    if body.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":  # Anthropic's "none" choice takes no other field
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def convert_tool_choice(value):
    if value is None:
        return None
    if value in ("auto", "none"):
        return {"type": value}
    if value == "required":
        return {"type": "any"}
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "tool", "name": (value.get("function") or {}).get("name")}
    raise InvalidRequest("tool_choice must be auto, none, required or a function", param="tool_choice")


# -- response ---------------------------------------------------------------------------------
def finish_reason(stop_reason, has_tool_calls):
    # a tool_use stop caused only by the response_format tool is a normal end for the client
    if stop_reason == "tool_use" and not has_tool_calls:
        return "stop"
    return FINISH.get(stop_reason, "stop")


def usage_of(usage):
    """OpenAI usage; cache writes and reads are input the model read, so they count as prompt."""
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0) + cached
    completion = usage.get("output_tokens") or 0
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def from_response(deployment, data, json_tool=None):
    """An OpenAI chat.completion dict for a Messages API response."""
    texts, tool_calls, json_text = [], [], None
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use" and json_tool and block.get("name") == json_tool:
            json_text = orjson.dumps(block.get("input") or {}).decode()
        elif kind == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        # thinking and server-tool blocks have no chat.completions counterpart
    content = json_text if json_text is not None else ("".join(texts) if texts else None)
    message = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = finish_reason(data.get("stop_reason"), bool(tool_calls))
    return {"id": "chatcmpl-" + str(data.get("id") or ""), "object": "chat.completion",
            "created": int(time.time()), "model": data.get("model") or deployment.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage_of(data.get("usage") or {})}


# -- streaming --------------------------------------------------------------------------------
class StreamTranslator:
    """Turns Messages API stream events into OpenAI chat.completion.chunk dicts, one event at a time."""

    def __init__(self, deployment, json_tool=None):
        self.json_tool = json_tool
        self.id = "chatcmpl-anthropic"
        self.model = deployment.model
        self.created = int(time.time())
        self.usage = {}
        self.blocks = {}  # Anthropic block index -> "text", "json", an OpenAI tool index, or None
        self.tool_count = 0
        self.done = False

    def chunk(self, delta, finish=None):
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}

    def feed(self, event, data):
        kind = data.get("type") or event
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = "chatcmpl-" + str(message.get("id") or "anthropic")
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self.block_start(data.get("index"), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self.block_delta(self.blocks.get(data.get("index")), data.get("delta") or {})
        if kind == "message_delta":
            # output_tokens here is cumulative; newer API versions may repeat the input counts too
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            return [self.chunk({}, finish_reason(stop, self.tool_count > 0))]
        if kind == "message_stop":
            self.done = True
            return [dict(self.chunk({}), choices=[], usage=usage_of(self.usage))]
        if kind == "error":
            raise anthropic_error(None, data)
        return []  # ping, content_block_stop, and event types added after this adapter

    def block_start(self, index, block):
        kind = block.get("type")
        if kind == "text":
            self.blocks[index] = "text"
            return [self.chunk({"content": block["text"]})] if block.get("text") else []
        if kind == "tool_use" and self.json_tool and block.get("name") == self.json_tool:
            self.blocks[index] = "json"
            return []
        if kind == "tool_use":
            self.blocks[index] = self.tool_count
            self.tool_count += 1
            return [self.chunk({"tool_calls": [{
                "index": self.blocks[index], "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}]})]
        self.blocks[index] = None  # thinking, server tools ...: nothing to show in chat chunks
        return []

    def block_delta(self, target, delta):
        kind = delta.get("type")
        if kind == "text_delta" and target == "text":
            return [self.chunk({"content": delta.get("text") or ""})]
        if kind != "input_json_delta" or not delta.get("partial_json"):
            return []
        if target == "json":
            return [self.chunk({"content": delta["partial_json"]})]
        if isinstance(target, int):
            return [self.chunk({"tool_calls": [{"index": target,
                                                "function": {"arguments": delta["partial_json"]}}]})]
        return []


def iter_stream(resp, translator):
    """Chunk dicts from an open SSE response; a stream cut before message_stop is an error."""
    events = iter_sse(resp)
    try:
        for event, data in events:
            payload = parse_json(data)
            if not isinstance(payload, dict):
                raise UpstreamError("anthropic upstream sent a stream event that is not JSON")
            yield from translator.feed(event, payload)
            if translator.done:
                return
        raise UpstreamError("anthropic upstream stream ended before message_stop")
    finally:
        events.close()  # releases the pooled connection even when the client stops reading
