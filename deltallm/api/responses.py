"""POST /v1/responses: OpenAI's Responses API, served by translating to chat completions."""
from flask import Blueprint, g

from deltallm.api import cached
from deltallm.api.common import gateway, json_response, mcp_loop, model_request, sse_response
from deltallm.mcp.loop import check_request
from deltallm.operations import response
from deltallm.schemas.responses import responses_request
from deltallm.sse import event
from deltallm.translate.responses import as_applied, from_completion, mcp_items, to_chat
from deltallm.translate.responses_stream import EventStream

bp = Blueprint("responses", __name__)


@bp.post("/v1/responses")
@bp.post("/responses")
def create_response():
    req, call = model_request(responses_request)
    gw = gateway()
    if gw.cache is not None:
        return create_cached(gw, req, call)
    body = to_chat(req)
    found = check_request(body)
    if found:
        return mcp_answer(call, req, body, found)
    if not req.get("stream"):
        return json_response(response(gw, call, req, body))
    return respond(open_events(gw, call, req, body))


def create_cached(gw, req, call):
    """The same, with the response cache on (MCP tool loops are never cached: their tools act)."""
    decision = cached.decide(req)  # consumes `cache` before the request is translated
    body = to_chat(req)
    found = check_request(body)
    if found:
        return mcp_answer(call, req, body, found)
    if not req.get("stream"):
        return cached.json_answer(req, call, lambda: response(gw, call, req, body), decision)
    return cached.stream_answer(req, call, lambda: open_events(gw, call, req, body), respond, decision=decision)


def mcp_answer(call, req, body, found):
    """The gateway runs the model's MCP calls itself, turn by turn."""
    completion, executed, offered = mcp_loop(call, body, found, req.get("max_tool_calls"))
    answer = from_completion(completion, as_applied(req, call.deployment.adapter))
    answer["output"] = mcp_items(offered.listed, executed) + answer["output"]
    return json_response(answer)


def open_events(gw, call, req, body):
    # Opened before the first byte, so upstream failures here are retried and answered as JSON errors.
    chunks = gw.router.run(call, req["model"], lambda d: d.adapter.chat_stream(call, body))
    return EventStream(as_applied(req, call.deployment.adapter), g.request_id).events(chunks)


def respond(events):
    # The Responses API has no [DONE]; failures are already events (see EventStream.fail).
    return sse_response((event(item, item["type"]) for item in events), done=None)
