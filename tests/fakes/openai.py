"""Fake OpenAI API (https://platform.openai.com/docs/api-reference), written from the public reference.

Chat answers `echo: <last user text>`; a request with tools whose last message is from the user
gets a call to the first tool with arguments {"q": <text>}. Directives: see common.py; failures
chosen by the model name: see model_failure.
"""
import io
import time

import orjson
from werkzeug.formparser import parse_form_data

from tests.fakes import common as directives
from tests.fakes.common import json_reply


def last_user_text(messages):
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return content or ""
    return ""


def error(status, message, etype="invalid_request_error", code=None):
    return json_reply(status, {"error": {"message": message, "type": etype, "param": None, "code": code}})


def check_auth(req):
    if req.headers.get("authorization") != "Bearer upstream-secret":
        return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
    return None


def wants_tool(body):
    """Call the first tool when tools are offered, allowed, and the user spoke last."""
    return bool(body.get("tools")) and body.get("tool_choice") != "none" \
        and body["messages"][-1].get("role") == "user"


def completion(body, text):
    words = text.split()
    tools = body.get("tools")
    message = {"role": "assistant", "content": text, "refusal": None}
    finish = "stop"
    if wants_tool(body):
        message["content"] = None
        message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {
            "name": tools[0]["function"]["name"], "arguments": orjson.dumps({"q": text}).decode()}}]
        finish = "tool_calls"
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"]) + 3
    return {
        "id": "chatcmpl-fake123", "object": "chat.completion", "created": int(time.time()),
        "model": body["model"] + "-2024-07-18", "system_fingerprint": "fp_fake",
        "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                    for i in range(body.get("n") or 1)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                  "total_tokens": prompt_tokens + len(words)},
    }


def stream(body, text, brk, prompt=""):
    base = {"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body["model"] + "-2024-07-18", "system_fingerprint": "fp_fake"}
    usage = (body.get("stream_options") or {}).get("include_usage")
    extra = {"usage": None} if usage else {}
    delay = float(directives.parse(prompt).get("word-delay") or 0)

    def event(obj):
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def gen():
        yield event(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}], **extra))
        if brk:
            raise ConnectionError("stream-break directive")
        if wants_tool(body):
            name = body["tools"][0]["function"]["name"]
            arguments = orjson.dumps({"q": text}).decode()
            yield event(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]},
                "logprobs": None, "finish_reason": None}], **extra))
            for piece in (arguments[:5], arguments[5:]):
                yield event(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": piece}}]}, "logprobs": None, "finish_reason": None}],
                    **extra))
            yield event(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                             "finish_reason": "tool_calls"}], **extra))
            yield b"data: [DONE]\n\n"
            return
        try:
            for i, word in enumerate(text.split()):
                if delay:
                    time.sleep(delay)
                yield event(dict(base, choices=[{"index": 0, "delta": {"content": (" " if i else "") + word},
                                                 "logprobs": None, "finish_reason": None}], **extra))
        except GeneratorExit:  # the reader went away mid-answer
            directives.STREAMS[prompt] = "aborted"
            raise
        directives.STREAMS[prompt] = "finished"
        yield event(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                         "finish_reason": "stop"}], **extra))
        if usage:
            full = completion(body, text)["usage"]
            yield event(dict(base, choices=[], usage=full))
        yield b"data: [DONE]\n\n"
    return 200, [("Content-Type", "text/event-stream")], gen()


def model_failure(model):
    """Deployment-specific failures, chosen by the upstream model name: `fail-503`, `ctx-limit`,
    `rate-limit` (429, Retry-After: 1), `hang` (answers after 30 s)."""
    if model.startswith("fail-"):
        return error(int(model[5:]), "forced failure", "server_error")
    if model == "ctx-limit":
        return error(400, "This model's maximum context length is 8192 tokens. However, your messages "
                          "resulted in 9000 tokens.", code="context_length_exceeded")
    if model == "rate-limit":
        return json_reply(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                          "param": None, "code": "rate_limit_exceeded"}}, [("Retry-After", "1")])
    if model == "hang":
        time.sleep(30)
    return None


def chat(req):
    denied = check_auth(req)
    if denied:
        return denied
    body = req.json()
    prompt = last_user_text(body.get("messages"))
    status = directives.apply(prompt)
    if status:
        headers = [("Retry-After", "1")] if status == 429 else []
        return json_reply(status, {"error": {"message": f"forced status {status}", "type": "server_error"
                                             if status >= 500 else "invalid_request_error",
                                             "param": None, "code": None}}, headers)
    if body.get("model") == "missing-model":
        return error(404, "The model `missing-model` does not exist", code="model_not_found")
    failing = model_failure(body.get("model") or "")
    if failing:
        return failing
    text = directives.reply_text(prompt)
    hostile = directives.parse(prompt)
    if "reply-json" in hostile:
        return 200, [("Content-Type", "application/json")], hostile["reply-json"].encode()
    if "huge-line" in hostile and body.get("stream"):
        return huge_line(body, int(hostile["huge-line"]))
    if "drip" in hostile:
        status, headers, data = json_reply(200, completion(body, text))
        return status, headers + [("Content-Length", str(len(data)))], dripped(data, float(hostile["drip"]))
    if body.get("stream"):
        return stream(body, text, "stream-break" in hostile, prompt)
    return json_reply(200, completion(body, text))


def huge_line(body, megabytes):
    """A stream whose second event is a line of `megabytes` MB that never ends."""
    first = {"id": "chatcmpl-huge", "object": "chat.completion.chunk", "created": int(time.time()),
             "model": body["model"], "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "logprobs": None, "finish_reason": None}]}

    def gen():
        yield b"data: " + orjson.dumps(first) + b"\n\n"
        block = b"data: " + b"x" * 1048570
        for _ in range(megabytes):
            yield block
    return 200, [("Content-Type", "text/event-stream")], gen()


def dripped(data, every):
    for i in range(len(data)):
        if i:
            time.sleep(every)
        yield data[i:i + 1]


def embeddings(req):
    denied = check_auth(req)
    if denied:
        return denied
    body = req.json()
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
            for i in range(len(inputs))]
    return json_reply(200, {"object": "list", "data": data, "model": body["model"],
                            "usage": {"prompt_tokens": 4, "total_tokens": 4}})


def images(req):
    denied = check_auth(req)
    if denied:
        return denied
    body = req.json()
    key = "b64_json" if body.get("response_format") == "b64_json" else "url"
    value = "aW1hZ2U=" if key == "b64_json" else "https://images.example/generated.png"
    return json_reply(200, {"created": int(time.time()),
                            "data": [{key: value, "revised_prompt": body["prompt"]}
                                     for _ in range(body.get("n") or 1)]})


SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}


def speech(req):
    denied = check_auth(req)
    if denied:
        return denied
    body = req.json()
    fmt = body.get("response_format") or "mp3"
    # "audio": the input text, repeated, in 4 KB pieces, so tests can check bytes and streaming
    audio = (f"{fmt}:{body['voice']}:{body['input']}|".encode()) * 500

    def pieces():
        for i in range(0, len(audio), 4096):
            yield audio[i:i + 4096]
    return 200, [("Content-Type", SPEECH_TYPES[fmt])], pieces()


def audio_form(req, verb):
    """Transcriptions and translations: `<verb> N bytes of NAME as MODEL`, in the asked format."""
    denied = check_auth(req)
    if denied:
        return denied
    env = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": req.headers["content-type"],
           "CONTENT_LENGTH": str(len(req.raw)), "wsgi.input": io.BytesIO(req.raw)}
    _stream, form, files = parse_form_data(env)
    upload = files["file"]
    audio = upload.read()
    text = f"{verb} {len(audio)} bytes of {upload.filename} as {form.get('model')}"
    fmt = form.get("response_format") or "json"
    if fmt in ("text", "srt", "vtt"):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], text.encode()
    return json_reply(200, {"text": text, "usage": {"type": "duration", "seconds": 3}})


def transcriptions(req):
    return audio_form(req, "heard")


def translations(req):
    return audio_form(req, "translated")


ROUTES = [
    ("POST", r"/v1/chat/completions", chat),
    ("POST", r"/v1/embeddings", embeddings),
    ("POST", r"/v1/images/generations", images),
    ("POST", r"/v1/audio/speech", speech),
    ("POST", r"/v1/audio/transcriptions", transcriptions),
    ("POST", r"/v1/audio/translations", translations),
]
