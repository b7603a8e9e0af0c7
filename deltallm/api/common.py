"""Helpers every view shares: gateway state, JSON in and out, the per-request Call."""
import orjson
from flask import Response, current_app, g, request

from deltallm.api import access, body as request_body, metering
from deltallm.errors import InvalidRequest, PermissionDenied
from deltallm.mcp import loop
from deltallm.operations import request_fallbacks
from deltallm.providers.base import Call
from deltallm.schemas.common import load
from deltallm.sse import DONE, HEADERS, guarded

JSON = "application/json"


def gateway():
    return current_app.extensions["deltallm"]


def json_body(schema=None):
    """The parsed JSON body (validated by `schema` if given); 400 on malformed JSON, 413 if too big."""
    raw = request_body.read(request.environ, gateway().max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    return load(schema, body) if schema is not None else body


def json_response(obj, status=200):
    if type(obj) is dict and "usage" in obj:
        g.usage = obj["usage"]  # for the access log
    return Response(orjson.dumps(obj), status=status, mimetype=JSON)


def sse_response(encoded_events, done=DONE):
    """Stream already-encoded SSE bytes, then `done`; failures mid-stream end with an error event."""
    if access.enabled():
        g.stream_tail = tail = [None]
        encoded_events = access.track_last(encoded_events, tail)
    return Response(guarded(encoded_events, g.request_id, done), mimetype="text/event-stream",
                    headers=HEADERS, direct_passthrough=True)


def new_call(fallbacks=None):
    g.call = call = Call(g.request_id, may_use=g.principal.may_use_model, fallbacks=fallbacks,
                         endpoint=metering.endpoint())
    return call


def model_request(schema):
    """(validated body, Call) for a request naming a model, once it is known the key may use that model
    and its limits admit it.

    The body's `fallbacks` (LiteLLM's per-request fallback groups) is the gateway's, never forwarded."""
    body = json_body(schema)
    check_model_access(body["model"])
    call = new_call(request_fallbacks(body))
    metering.admit(call, body["model"], body, stream=bool(body.get("stream")))
    return body, call


def check_model_access(model):
    g.model = model
    if not g.principal.may_use_model(model):
        raise PermissionDenied(f"This key is not allowed to use model `{model}`.", param="model")


def mcp_loop(call, body, found, max_calls=None):
    """Run a chat body with MCP tools through the tool loop: (completion, executed calls, offered tools)."""
    gw = gateway()
    completion, executed, offered = loop.run(gw.router, call, body, found, gw.mcp, g.principal, gw.mcp_limits,
                                             max_calls)
    g.mcp_calls = len(executed)  # the x-deltallm-mcp-calls header
    return completion, executed, offered


def query_args(*names):
    """The named query parameters; an unknown one, a repeated one or a NUL character is a 400."""
    for name in request.args:
        if name not in names:
            raise InvalidRequest(f"Unknown query parameter '{name}' (known: {', '.join(names)})", param=name)
    out = {}
    for name in names:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise InvalidRequest(f"'{name}' may be given once", param=name)
        if values and ("\x00" in values[0] or len(values[0]) > 255):
            raise InvalidRequest(f"Invalid value for '{name}'", param=name)
        out[name] = values[0] if values else None
    return out
