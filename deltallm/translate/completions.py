"""Legacy completions <-> chat: each prompt becomes a user message; answers come back as text_completion."""
import time
import uuid

from deltallm.errors import InvalidRequest

# Fields of the legacy API that have no chat equivalent; OpenAI's behaviour cannot be reproduced.
UNSUPPORTED = {
    "echo": lambda v: bool(v),
    "best_of": lambda v: v is not None and v > 1,
    "logprobs": lambda v: v is not None,
    "suffix": lambda v: v is not None,
}
# Chat-only fields: the legacy request would overwrite them (messages) or its text-only answer would
# drop what they produce (tool calls, per-token logprobs), so they are refused rather than ignored.
CHAT_ONLY = ("messages", "tools", "tool_choice", "functions", "function_call", "top_logprobs")
MAX_N = 128  # OpenAI's maximum of n (the schema's too)
FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter",
          "tool_calls": "stop", "function_call": "stop"}


def prompts(body, limit):
    """The prompt(s) as a list of strings, once no field chat models cannot honour is set.

    Each prompt is one upstream call asking for n choices: at most `limit` prompts, and at most
    `limit` choices in all (or OpenAI's own maximum of n, if that is more)."""
    for name, rejected in UNSUPPORTED.items():
        if rejected(body.get(name)):
            raise InvalidRequest(f"'{name}' is not supported: DeltaLLM serves completions through chat "
                                 "models, which cannot honour it.", param=name)
    for name in CHAT_ONLY:
        if body.get(name) is not None:
            raise InvalidRequest(f"'{name}' is not a parameter of the completions API; use "
                                 "/v1/chat/completions for it.", param=name)
    prompt = body["prompt"]  # the schema admits a string or a non-empty list of strings
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if len(prompts) > limit:
        raise InvalidRequest(f"Invalid value for 'prompt': this gateway accepts at most {limit} prompts "
                             f"in one request, got {len(prompts)}.", param="prompt")
    n, most = body.get("n") or 1, max(limit, MAX_N)
    if len(prompts) * n > most:
        raise InvalidRequest(f"Invalid value for 'n': {len(prompts)} prompts x n={n} asks for "
                             f"{len(prompts) * n} completions; this gateway allows at most {most} in one "
                             "request.", param="n")
    return prompts


def to_chat(body, prompt):
    """A chat request carrying every other field of the completions request."""
    chat = {k: v for k, v in body.items() if k not in UNSUPPORTED and k != "prompt"}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def from_chat(results, n):
    """One text_completion from the chat answers of each prompt, choices index-aligned as OpenAI does."""
    first = results[0]
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for p, result in enumerate(results):
        for choice in result.get("choices") or []:
            message = choice.get("message") or {}
            choices.append({"text": message.get("content") or "", "index": p * n + choice.get("index", 0),
                            "logprobs": None,
                            "finish_reason": FINISH.get(choice.get("finish_reason"), "stop")})
        for key in usage:
            usage[key] += (result.get("usage") or {}).get(key) or 0
    out = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
           "created": first.get("created") or int(time.time()), "model": first.get("model"),
           "choices": sorted(choices, key=lambda c: c["index"]), "usage": usage}
    if first.get("system_fingerprint"):
        out["system_fingerprint"] = first["system_fingerprint"]
    return out


def stream(chunk_streams, n, include_usage):
    """text_completion chunks from the chat chunk stream of each prompt, in prompt order."""
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    usage, model = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, None
    for p, chunks in enumerate(chunk_streams):
        last = {}  # usage is cumulative: some upstreams repeat it on every chunk, so keep the latest
        for chunk in chunks:
            model = chunk.get("model") or model
            last = chunk.get("usage") or last
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") or ""
                finish = choice.get("finish_reason")
                if not text and not finish:
                    continue  # role-only and tool-call deltas have no legacy form
                yield {"id": completion_id, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"text": text, "index": p * n + choice.get("index", 0), "logprobs": None,
                                    "finish_reason": FINISH.get(finish, "stop") if finish else None}]}
        for key in usage:
            usage[key] += last.get(key) or 0
    if include_usage:
        yield {"id": completion_id, "object": "text_completion", "created": created, "model": model,
               "choices": [], "usage": usage}
