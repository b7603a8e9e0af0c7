"""Anthropic Messages API adapter: OpenAI chat requests in, `/v1/messages` calls out, and back."""
import itertools
import time

import orjson

from deltallm.errors import UpstreamError
from deltallm.providers.anthropic_request import json_tool_name, to_request
from deltallm.providers.base import (Provider, error_message, iter_sse, map_status, not_a_completion, parse_json,
                                    translated)

API_VERSION = "2023-06-01"
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
    key_header = ("x-api-key", "{key}")
    applies_reasoning_effort = True  # as extended thinking (anthropic_request.THINKING_BUDGETS)

    def __init__(self, deployment):
        super().__init__(deployment)
        self.use_headers(**{"anthropic-version": API_VERSION})  # extra_headers may add anthropic-beta

    def chat(self, call, body):
        payload = to_request(self.deployment, body)
        resp = self.send(call, self.api_base + "/messages", payload, headers=self.headers)
        data = parse_json(resp.content)
        if not isinstance(data, dict):
            raise UpstreamError("anthropic upstream returned a body that is not a JSON object")
        if not isinstance(data.get("content"), list):  # a Message always has its content blocks
            raise not_a_completion("anthropic", "a Messages API message")
        return translated("anthropic", from_response, self.deployment, data, json_tool_name(body))

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


# -- response ---------------------------------------------------------------------------------
def finish_reason(stop_reason, has_tool_calls):
    # a tool_use stop caused only by the response_format tool is a normal end for the client
    if stop_reason == "tool_use" and not has_tool_calls:
        return "stop"
    return FINISH.get(stop_reason, "stop")


def usage_of(usage):
    """OpenAI usage; cache writes and reads are input the model read, so they count as prompt."""
    cached, written = usage.get("cache_read_input_tokens") or 0, usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + written + cached
    completion = usage.get("output_tokens") or 0
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached or written:
        out["prompt_tokens_details"] = {"cached_tokens": cached, "cache_write_tokens": written}
    return out


def from_response(deployment, data, json_tool=None):
    """An OpenAI chat.completion dict for a Messages API response."""
    texts, tool_calls, json_text, thoughts, thinking = [], [], None, [], []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use" and json_tool and block.get("name") == json_tool:
            json_text = orjson.dumps(block.get("input") or {}).decode()
        elif kind == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
            thinking.append({"type": "thinking", "thinking": block.get("thinking") or "",
                             "signature": block.get("signature") or ""})
        elif kind == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": block.get("data") or ""})
        # server-tool blocks have no chat.completions counterpart
    content = json_text if json_text is not None else ("".join(texts) if texts else None)
    message = {"role": "assistant", "content": content, "refusal": None}
    if thinking:  # reasoning_content as LiteLLM and DeepSeek clients read it; the signed blocks go back
        message["reasoning_content"] = "".join(thoughts)
        message["thinking_blocks"] = thinking
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
        self.blocks = {}  # Anthropic block index -> "text", "json", "thinking", an OpenAI tool index, or None
        self.thinking = {}  # thinking block index -> the block so far (its text and signature)
        self.tool_count = 0
        self.filled = set()  # blocks whose input got any JSON text
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
            return self.block_delta(data.get("index"), data.get("delta") or {})
        if kind == "content_block_stop":
            return self.block_stop(data.get("index"))
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
        return []  # ping, and event types added after this adapter

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
        if kind == "thinking":
            self.blocks[index] = "thinking"
            self.thinking[index] = {"type": "thinking", "thinking": block.get("thinking") or "",
                                    "signature": block.get("signature") or ""}
            return [self.chunk({"reasoning_content": block["thinking"]})] if block.get("thinking") else []
        self.blocks[index] = None  # server tools ...: nothing to show in chat chunks
        if kind == "redacted_thinking":
            return [self.chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": block.get("data") or ""}]})]
        return []

    def block_delta(self, index, delta):
        kind, target = delta.get("type"), self.blocks.get(index)
        if kind == "text_delta" and target == "text":
            return [self.chunk({"content": delta.get("text") or ""})]
        if target == "thinking" and kind in ("thinking_delta", "signature_delta"):
            field = kind.partition("_")[0]
            self.thinking[index][field] += delta.get(field) or ""
            return [self.chunk({"reasoning_content": delta["thinking"]})] if kind == "thinking_delta" and \
                delta.get("thinking") else []
        if kind != "input_json_delta" or not delta.get("partial_json"):
            return []
        self.filled.add(index)
        return self.input_json(target, delta["partial_json"])

    def block_stop(self, index):
        if self.blocks.get(index) == "thinking":  # the whole signed block, for the client to send back
            return [self.chunk({"thinking_blocks": [self.thinking.pop(index)]})]
        # A tool called without input streams no JSON at all (or only ""), which would leave the
        # client with arguments "" (json.loads fails); OpenAI and the non-streamed answer say "{}".
        return [] if index in self.filled else self.input_json(self.blocks.get(index), "{}")

    def input_json(self, target, text):
        if target == "json":
            return [self.chunk({"content": text})]
        if isinstance(target, int):
            return [self.chunk({"tool_calls": [{"index": target, "function": {"arguments": text}}]})]
        return []


def iter_stream(resp, translator):
    """Chunk dicts from an open SSE response; a stream cut before message_stop is an error."""
    events = iter_sse(resp)
    try:
        for event, data in events:
            payload = parse_json(data)
            if not isinstance(payload, dict):
                raise UpstreamError("anthropic upstream sent a stream event that is not JSON")
            yield from translated("anthropic", translator.feed, event, payload)
            if translator.done:
                return
        raise UpstreamError("anthropic upstream stream ended before message_stop")
    finally:
        events.close()  # releases the pooled connection even when the client stops reading
