"""POST /v1/completions (legacy), served by chat models."""
from flask import Blueprint

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
        return json_response(legacy_completion(state, call, body))
    bodies = [completions.to_chat(body, prompt) for prompt in completions.prompts(body, state.max_prompts)]
    router, n = state.router, body.get("n") or 1
    # every stream is opened before the first byte, so any failure to start is retried or reported
    streams = router.run_each(call, body["model"], bodies, lambda d, c, b: d.adapter.chat_stream(c, b))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return sse_response(event(c) for c in completions.stream(streams, n, include_usage))
