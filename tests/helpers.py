"""Builders for upstream replies used across tests."""
import orjson


def completion(content="Hello!", model="gpt-4o-mini-2024-07-18", finish="stop", **extra):
    body = {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    body.update(extra)
    return body


def sse(*chunks, done=True):
    out = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta, finish=None, usage=False, model="gpt-4o-mini-2024-07-18"):
    body = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        body["usage"] = None
    return body


def usage_chunk(model="gpt-4o-mini-2024-07-18"):
    return {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


def parse_sse(data):
    """Decoded `data:` payloads of an SSE body; '[DONE]' stays a string."""
    events = []
    for block in data.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                payload = line[6:]
                events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events
