"""POST /v1/chat/completions, plain and streamed."""
from flask import Blueprint

from deltallm.api import cached
from deltallm.api.common import gateway, json_response, mcp_loop, model_request, sse_response
from deltallm.mcp.loop import check_request
from deltallm.operations import chat
from deltallm.schemas.chat import chat_request
from deltallm.sse import event

bp = Blueprint("chat", __name__)


@bp.post("/v1/chat/completions")
@bp.post("/chat/completions")
def chat_completions():
    body, call = model_request(chat_request)
    gw = gateway()
    found = check_request(body)
    if found:  # the gateway runs the model's MCP calls itself, turn by turn
        if gw.cache is not None:
            cached.consume(body)
        return json_response(mcp_loop(call, body, found)[0])
    if not body.get("stream"):
        if gw.cache is not None:
            return cached.json_answer(body, call, lambda: chat(gw, call, body))
        return json_response(chat(gw, call, body))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if gw.cache is not None:
        return cached.stream_answer(
            body, call, lambda: gw.router.run(call, body["model"], lambda d: d.adapter.chat_stream(call, body)),
            lambda chunks: sse_response(encode_chunks(chunks, include_usage)), from_json=cached.chat_chunks)
    chunks = gw.router.run(call, body["model"], lambda d: d.adapter.chat_stream(call, body))
    return sse_response(encode_chunks(chunks, include_usage))


def encode_chunks(chunks, include_usage):
    """Chunks as SSE events; the usage-only chunk is kept only when the client asked for it."""
    for chunk in chunks:
        if not include_usage:
            if not chunk.get("choices") and chunk.get("usage") is not None:
                continue
            chunk.pop("usage", None)
        yield event(chunk)
