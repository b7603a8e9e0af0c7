"""The response cache at the HTTP edge: look up before the upstream call, store the answer after it,
and answer hits (JSON, or SSE replayed from a cached stream or JSON answer). Views call it only when
the cache is on (`gateway().cache` is not None), so the cache-off path does no work here."""
import orjson
from flask import g, request

from deltallm.api.common import gateway, json_response
from deltallm.cache import policy

HEADER = "x-deltallm-cache"
ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
MAX_ENTRY_BYTES = 8 * 1024 * 1024   # a longer stream is served but not cached


def decide(body):
    gw = gateway()
    principal = g.principal
    namespace = "master" if principal.is_master else principal.key_id
    return policy.decide(gw.settings.general["cache"], g.call.endpoint, gw.registry.resolve(body["model"]),
                         namespace, body, request.headers.get("Cache-Control"))


def consume(body):
    """A request the cache never answers (MCP tool loops run tools): its `cache` field is still ours."""
    policy.controls(body.pop("cache", None), None, 0)


def json_answer(body, call, run, decision=None):
    """The JSON answer of `run()`, from the cache when it holds one (`decision`: when already decided)."""
    gw = gateway()
    decision = decision or decide(body)
    if decision.lookup:
        entry = entry_of(gw.cache.get_many([decision.key + ":json"])[0], "a")
        if entry is not None:
            return hit(call, json_response(entry["a"]), entry)
    answer = run()
    if decision.store:
        deployment = call.deployment.id if call.deployment is not None else None
        gw.cache.set(decision.key + ":json", orjson.dumps({"d": deployment, "a": answer}), decision.ttl)
    return labelled(json_response(answer), decision.label)


def stream_answer(body, call, open_stream, respond, from_json=None, decision=None):
    """A streamed answer: `open_stream()` gives the endpoint's event dicts, `respond(dicts)` the SSE
    response. A hit replays a cached stream, or (with `from_json`) the events of a cached JSON answer."""
    gw = gateway()
    decision = decision or decide(body)
    if decision.lookup:
        names = [decision.key + ":sse"] + ([decision.key + ":json"] if from_json is not None else [])
        found = gw.cache.get_many(names)
        entry = entry_of(found[0], "c")
        if entry is not None:
            return hit(call, respond(iter(entry["c"])), entry)
        entry = entry_of(found[1], "a") if from_json is not None else None
        if entry is not None:
            return hit(call, respond(from_json(entry["a"])), entry)
    events = open_stream()  # failures to start are raised here, before any byte is sent
    if decision.store:
        events = captured(events, call, gw.cache, decision)
    return labelled(respond(events), decision.label)


def entry_of(raw, part):
    """A stored entry, or None (a miss) when there is none or it is not one of ours: a shared Redis may
    hold anything."""
    if raw is None:
        return None
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return entry if type(entry) is dict and part in entry else None


def captured(events, call, store, decision):
    """Pass the events through; a stream that ends normally is stored (one cut or failed is not)."""
    kept, size = [], 0
    for item in events:
        if kept is not None:
            raw = orjson.dumps(item)  # now: later steps may change the dict (usage is popped)
            size += len(raw)
            if size > MAX_ENTRY_BYTES:
                kept = None
            else:
                kept.append(raw)
        yield item
    if kept is not None:
        deployment = orjson.dumps(call.deployment.id if call.deployment is not None else None)
        store.set(decision.key + ":sse", b'{"d":' + deployment + b',"c":[' + b",".join(kept) + b"]}",
                  decision.ttl)


def hit(call, response, entry):
    """Answered from the cache: a usage record with cost 0 (no upstream was called)."""
    call.ticket.done(200, ZERO_USAGE, deployment=None, price=None, cache_hit=True)
    if entry.get("d"):
        response.headers["x-deltallm-deployment"] = entry["d"]
    return labelled(response, "hit")


def labelled(response, label):
    response.headers[HEADER] = label
    return response


def chat_chunks(completion):
    """A cached chat.completion as the chunks a stream of it would have had."""
    base = {"id": completion.get("id"), "object": "chat.completion.chunk", "created": completion.get("created"),
            "model": completion.get("model")}
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    for choice in completion.get("choices") or ():
        message = choice.get("message") or {}
        delta = {"role": "assistant", "content": message.get("content")}
        if message.get("refusal") is not None:
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        index = choice.get("index", 0)
        yield {**base, "choices": [{"index": index, "delta": delta, "logprobs": choice.get("logprobs"),
                                    "finish_reason": None}]}
        yield {**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                    "finish_reason": choice.get("finish_reason")}]}
    if completion.get("usage") is not None:
        yield {**base, "choices": [], "usage": completion["usage"]}
