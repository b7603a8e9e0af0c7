"""POST /v1/completions (legacy), served by chat models."""
from flask import Blueprint

from deltallm.api import cached
from deltallm.api.chat import encode_chunks
from deltallm.api.common import gateway, json_response, model_request, sse_response
from deltallm.operations import legacy_completion
from deltallm.schemas.completions import completion_request
from deltallm.sse import event
from deltallm.translate import completions

bp = Blueprint("completions", __name__)


@bp.post("/v1/completions")
@bp.post("/completions")
def create_completion():
    body, call = model_request(completion_request)
    state = gateway()
    if not body.get("stream"):
        if state.cache is not None:
            return cached.json_answer(body, call, lambda: legacy_completion(state, call, body))
        return json_response(legacy_completion(state, call, body))
    if state.cache is not None:  # cached with its usage chunk; each replay keeps it only if asked for
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return cached.stream_answer(body, call, lambda: completions.stream(open_streams(state, call, body),
                                                                           body.get("n") or 1, True),
                                    lambda chunks: sse_response(encode_chunks(chunks, include_usage)))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    streams = open_streams(state, call, body)
    return sse_response(event(c) for c in completions.stream(streams, body.get("n") or 1, include_usage))


def open_streams(state, call, body):
    """One upstream chat stream per prompt, every one opened before the first byte (so any failure to
    start is retried or reported as JSON)."""
    bodies = [completions.to_chat(body, prompt) for prompt in completions.prompts(body, state.max_prompts)]
    return state.router.run_each(call, body["model"], bodies, lambda d, c, b: d.adapter.chat_stream(c, b))
