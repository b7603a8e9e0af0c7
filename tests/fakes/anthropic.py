"""Fake Anthropic Messages API (docs.anthropic.com/en/api/messages), written from the public reference.

Answers `echo: <last user text>`. With tools, a request whose last message is user text (or whose
tool_choice is `any`/`tool`) gets a tool_use block calling the first (or the forced) tool with
input {"q": <answer text>}. `max_tokens` cuts the answer (one word = one token) and
`stop_sequences` are honoured, with the matching stop_reason. Like the API, blank text (a text
block, string content or tool_result content of only whitespace) is refused. Directives: see
common.py; a forced status answers in Anthropic's error shape (529 is `overloaded_error`).

Like the API it refuses `temperature` with `top_p`, whitespace-only stop sequences, image types other
than jpeg/png/gif/webp, a first turn that is not the user's, and, with `thinking` enabled: a budget under
1024 or not below max_tokens, temperature/top_k, a forced tool_choice, and a final assistant tool_use
turn that does not start with a thinking block whose signature it issued. Thinking answers start with a
signed thinking block. Any `cache_control` marker reports 5 cache-written and 10 cache-read tokens.
"""
import hashlib

import orjson

from tests.fakes import common as directives
from tests.fakes.common import json_reply

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def error(status, message, headers=None):
    etype = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json_reply(status, {"type": "error", "error": {"type": etype, "message": message},
                               "request_id": "req_fake123"}, headers)


def text_of(content):
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content or [] if b.get("type") == "text")


def last_user_text(messages):
    """The text of the last user turn that has any (tool results ride in user turns too)."""
    for message in reversed(messages or []):
        if message.get("role") == "user" and text_of(message.get("content")):
            return text_of(message["content"])
    return ""


def ends_with_user_text(messages):
    last = (messages or [{}])[-1]
    content = last.get("content")
    if last.get("role") != "user":
        return False
    return isinstance(content, str) or not any(b.get("type") == "tool_result" for b in content or [])


def blank_text(messages):
    """The API's complaint about whitespace-only text anywhere in the turns, or None."""
    for i, message in enumerate(messages):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            inner = block.get("content") if block.get("type") == "tool_result" else None
            texts = [block.get("text")] if block.get("type") == "text" else \
                [inner] if isinstance(inner, str) else [b.get("text") for b in inner or [] if b.get("type") == "text"]
            if any(isinstance(t, str) and not t.strip() for t in texts):
                return f"messages.{i}: text content blocks must contain non-whitespace text"
    return None


IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def sign(thinking):
    return hashlib.sha256(b"fake-signature:" + thinking.encode()).hexdigest()


def blocks_of(message):
    content = message.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


def refusal(body):
    """The API's 400 message for what it refuses (see the module docstring), or None."""
    if "temperature" in body and "top_p" in body:
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    if any(not s.strip() for s in body.get("stop_sequences") or []):
        return "stop_sequences: each stop sequence must contain non-whitespace"
    if body["messages"][0].get("role") != "user":
        return "messages: first message must use the \"user\" role"
    for i, message in enumerate(body["messages"]):
        for j, block in enumerate(blocks_of(message)):
            source = block.get("source") or {}
            if block.get("type") == "image" and source.get("type") == "base64" and \
                    source.get("media_type") not in IMAGE_TYPES:
                return f"messages.{i}.content.{j}.source.base64.media_type: Input should be " + \
                    "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
    thinking = body.get("thinking")
    return thinking_refusal(body, thinking) if thinking else None


def thinking_refusal(body, thinking):
    budget = thinking.get("budget_tokens") or 0
    if thinking.get("type") != "enabled" or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if body["max_tokens"] <= budget:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if "temperature" in body or "top_k" in body:
        return "`temperature` may only be set to 1 when thinking is enabled"
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    last = max((i for i, m in enumerate(body["messages"]) if m.get("role") == "assistant"), default=None)
    if last is not None and any(b.get("type") == "tool_use" for b in blocks_of(body["messages"][last])):
        first = blocks_of(body["messages"][last])[0]
        if first.get("type") not in ("thinking", "redacted_thinking"):
            return (f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                    "start with a thinking block")
        if first["type"] == "thinking" and first.get("signature") != sign(first.get("thinking") or ""):
            return f"messages.{last}.content.0: Invalid `signature` in `thinking` block"
    return None


def cache_marked(body):
    system = body.get("system")
    blocks = (system if isinstance(system, list) else []) + (body.get("tools") or [])
    blocks += [b for m in body["messages"] for b in blocks_of(m)]
    return any("cache_control" in b for b in blocks)


def reported_model(model):
    # The API reports the concrete snapshot behind an alias.
    return model[:-len("-latest")] + "-20241022" if model.endswith("-latest") else model


def answer(body, text):
    """(content blocks, stop_reason, stop_sequence, output tokens) for a request."""
    tools, choice = body.get("tools") or [], body.get("tool_choice") or {"type": "auto"}
    if tools and choice.get("type") != "none" and (
            choice.get("type") in ("any", "tool") or ends_with_user_text(body["messages"])):
        name = choice.get("name") if choice.get("type") == "tool" else tools[0]["name"]
        block = {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {"q": text}}
        return [block], "tool_use", None, len(text.split()) + 5
    stop_reason, stop_sequence = "end_turn", None
    for sequence in body.get("stop_sequences") or []:
        if sequence in text:
            text, stop_reason, stop_sequence = text[:text.index(sequence)], "stop_sequence", sequence
    words = text.split()
    if len(words) > body["max_tokens"]:
        words, stop_reason, stop_sequence = words[:body["max_tokens"]], "max_tokens", None
    return [{"type": "text", "text": " ".join(words)}], stop_reason, stop_sequence, len(words)


def input_tokens(body):
    system = body.get("system")
    system = system if isinstance(system, str) else text_of(system)
    return len(system.split()) + sum(len(text_of(m.get("content")).split()) for m in body["messages"]) + 3


def message(body, text):
    content, stop_reason, stop_sequence, output = answer(body, text)
    if body.get("thinking"):
        thought = f"Thinking about: {text}"
        content = [{"type": "thinking", "thinking": thought, "signature": sign(thought)}] + content
        output += len(thought.split())
    cached = cache_marked(body)
    return {"id": "msg_fake123", "type": "message", "role": "assistant",
            "model": reported_model(body["model"]), "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens(body), "cache_creation_input_tokens": 5 if cached else 0,
                      "cache_read_input_tokens": 10 if cached else 0, "output_tokens": output}}


def sse(name, data):
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream(body, text, brk):
    full = message(body, text)
    start = dict(full, content=[], stop_reason=None, stop_sequence=None,
                 usage=dict(full["usage"], output_tokens=1))

    def gen():
        yield sse("message_start", {"type": "message_start", "message": start})
        if brk:
            raise ConnectionError("stream-break directive")
        for index, block in enumerate(full["content"]):
            if block["type"] == "thinking":
                first, words = {"type": "thinking", "thinking": "", "signature": ""}, block["thinking"].split()
                pieces = [{"type": "thinking_delta", "thinking": (" " if i else "") + word}
                          for i, word in enumerate(words)] + [{"type": "signature_delta", "signature": block["signature"]}]
            elif block["type"] == "text":
                first, pieces = {"type": "text", "text": ""}, []
                for i, word in enumerate(block["text"].split()):
                    pieces.append({"type": "text_delta", "text": (" " if i else "") + word})
            else:  # tool input arrives as partial JSON strings, beginning with an empty one
                first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                raw = orjson.dumps(block["input"]).decode()
                pieces = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": raw[i:i + 7]}
                    for i in range(0, len(raw), 7)]
            yield sse("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": first})
            if index == 0:
                yield sse("ping", {"type": "ping"})
            for delta in pieces:
                yield sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                  "delta": delta})
            yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": full["stop_reason"],
                                              "stop_sequence": full["stop_sequence"]},
                                    "usage": {"output_tokens": full["usage"]["output_tokens"]}})
        yield sse("message_stop", {"type": "message_stop"})
    return 200, [("Content-Type", "text/event-stream"), ("request-id", "req_fake123")], gen()


def messages(req):
    if req.headers.get("x-api-key") != "upstream-secret":
        return error(401, "invalid x-api-key")
    if not req.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    body = req.json() or {}
    if "max_tokens" not in body:
        return error(400, "max_tokens: Field required")
    if not body.get("messages"):
        return error(400, "messages: Field required")
    if blank_text(body["messages"]):
        return error(400, blank_text(body["messages"]))
    if refusal(body):
        return error(400, refusal(body))
    prompt = last_user_text(body["messages"])
    status = directives.apply(prompt)
    if status:
        messages_by_status = {529: "Overloaded", 429: "Number of request tokens has exceeded your "
                              "per-minute rate limit"}
        headers = [("retry-after", "1")] if status == 429 else []
        return error(status, messages_by_status.get(status, f"forced status {status}"), headers)
    text = directives.reply_text(prompt)
    if body.get("stream"):
        return stream(body, text, "stream-break" in directives.parse(prompt))
    return json_reply(200, message(body, text), [("request-id", "req_fake123")])


ROUTES = [("POST", r"/v1/messages", messages)]
