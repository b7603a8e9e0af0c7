"""An in-process provider with deterministic replies, for offline trials, client tests and load tests.

Configure with `model: mock/<any-name>` and optionally `mock_response` (fixed reply text),
`mock_latency_ms` (delay before the reply or first chunk) and `mock_chunk_delay_ms` (between
stream chunks). It calls the request's function tools as a model would (see mock_tools.calls):
`tool_choice` "required" or a named function always calls, and a user prompt naming a tool calls it;
`mock_tool_calls` pins more: `first` (the first tool, or the one tool_choice names, when the last
message is the user's), `all` (every tool at once, likewise), `always` (the first tool on every turn,
tool results or not), false (never) or a list of exact tool calls (LiteLLM's form). Arguments are built to fit each tool's parameters schema, and a
`response_format` json_schema / json_object is answered with JSON valid against it. A request may
also carry `mock_response` or `mock_tool_calls` itself, as with LiteLLM. Otherwise the
reply is `This is a mock response to: <last user text>`. A reply stops after `max_tokens` words, and
after MAX_REPLY_WORDS words or MAX_REPLY_CHARS characters in any case (finish_reason `length`).
"""
import base64
import hashlib
import struct
import time
import uuid

from deltallm.errors import InvalidRequest
from deltallm.providers import mock_tools
from deltallm.providers.mock_tools import text_of
from deltallm.providers.base import Provider


# Bounds on what one request may make the mock produce: n (up to 128) copies of a reply that echoes
# the prompt would otherwise make a 30 MB prompt a multi-gigabyte answer.
MAX_REPLY_WORDS, MAX_REPLY_CHARS = 1024, 16384
# Bounds on what one embeddings request may make the mock compute (OpenAI's models stop at 3072).
MAX_DIMENSIONS = 8192
MAX_VALUES = 1 << 20  # inputs x dimensions: about 20 MB of JSON


def count_tokens(text):
    """A rough, deterministic token estimate (about four characters a token)."""
    return max(1, (len(text) + 3) // 4) if text else 0


class MockProvider(Provider):
    name = "mock"

    def __init__(self, deployment):
        super().__init__(deployment)
        params = deployment.params
        self.fixed = params.get("mock_response")
        self.latency = float(params.get("mock_latency_ms") or 0) / 1000
        self.chunk_delay = float(params.get("mock_chunk_delay_ms") or 0) / 1000
        self.tool_mode = params.get("mock_tool_calls")

    def answer(self, body):
        """(reply words, finish_reason, usage) for a request."""
        fixed = body.get("mock_response", self.fixed)
        if fixed is not None and not isinstance(fixed, str):
            raise InvalidRequest("mock_response must be a string", param="mock_response")
        messages = body.get("messages") or []
        last_user = mock_tools.user_text(messages)
        if fixed is None:
            fixed = mock_tools.structured(body, last_user)
        reply = fixed if fixed is not None else f"This is a mock response to: {last_user}"
        finish = "stop" if len(reply) <= MAX_REPLY_CHARS else "length"
        words = reply[:MAX_REPLY_CHARS].split(" ", MAX_REPLY_WORDS)  # the last item holds the rest, if any
        limit = min(body.get("max_completion_tokens") or body.get("max_tokens") or MAX_REPLY_WORDS,
                    MAX_REPLY_WORDS)
        if len(words) > limit:
            words, finish = words[:limit], "length"
        prompt = sum(count_tokens(text_of(m.get("content"))) for m in messages) + 3 * len(messages)
        completion = len(words) * (body.get("n") or 1)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        return words, finish, usage

    def wait(self, call):
        """The simulated upstream latency, counted as upstream time like a real call's."""
        if self.latency:
            started = time.perf_counter()
            time.sleep(self.latency)
            call.upstream_s += time.perf_counter() - started

    def envelope(self, obj):
        return {"id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}", "object": obj,
                "created": int(time.time()), "model": self.deployment.model,
                "system_fingerprint": "fp_mock"}

    def chat(self, call, body):
        words, finish, usage = self.answer(body)
        self.wait(call)
        out = self.envelope("chat.completion")
        message = {"role": "assistant", "content": " ".join(words), "refusal": None}
        calls = mock_tools.calls(body, body.get("mock_tool_calls", self.tool_mode))
        if calls:
            message, finish = {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}, \
                "tool_calls"
        out["choices"] = [{"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                          for i in range(body.get("n") or 1)]
        out["usage"] = usage
        return out

    def chat_stream(self, call, body):
        words, finish, usage = self.answer(body)
        self.wait(call)
        calls = mock_tools.calls(body, body.get("mock_tool_calls", self.tool_mode))
        if calls:
            return self.tool_chunks(body.get("n") or 1, calls, usage)
        return self.chunks(body.get("n") or 1, words, finish, usage)

    def tool_chunks(self, n, calls, usage):
        base = self.envelope("chat.completion.chunk")
        deltas = [{"role": "assistant", "content": None,
                   "tool_calls": [dict(c, index=j) for j, c in enumerate(calls)]}, {}]
        for delta, reason in zip(deltas, (None, "tool_calls")):
            for index in range(n):
                yield dict(base, choices=[{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}])
        yield dict(base, choices=[], usage=usage)

    def chunks(self, n, words, finish, usage):
        base = self.envelope("chat.completion.chunk")

        def chunk(index, delta, reason=None):
            return dict(base, choices=[{"index": index, "delta": delta, "logprobs": None,
                                        "finish_reason": reason}])
        for index in range(n):
            yield chunk(index, {"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if self.chunk_delay:
                time.sleep(self.chunk_delay)
            for index in range(n):
                yield chunk(index, {"content": word if i == 0 else " " + word})
        for index in range(n):
            yield chunk(index, {}, finish)
        yield dict(base, choices=[], usage=usage)

    def embeddings(self, call, body):
        """Deterministic unit-ish vectors derived from each input's digest."""
        inputs = body["input"] if isinstance(body["input"], list) and body["input"] and \
            not isinstance(body["input"][0], int) else [body["input"]]
        size = int(body.get("dimensions") or self.deployment.params.get("mock_dimensions") or 16)
        if size > MAX_DIMENSIONS:
            raise InvalidRequest(f"Invalid value for 'dimensions': the mock provider returns at most "
                                 f"{MAX_DIMENSIONS} dimensions.", param="dimensions")
        if len(inputs) * size > MAX_VALUES:
            raise InvalidRequest(f"Invalid value for 'input': {len(inputs)} inputs x {size} dimensions is "
                                 f"more than the mock provider returns ({MAX_VALUES} values).", param="input")
        data, tokens = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += count_tokens(text) if isinstance(item, str) else len(item)
            seed = hashlib.sha256(text.encode()).digest()
            vector = [(seed[j % 32] - 127.5) / 127.5 for j in range(size)]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return {"object": "list", "data": data, "model": self.deployment.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
