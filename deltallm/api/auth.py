"""Request hooks: request id and timing, bearer-key authentication, body bounds, the gateway's headers
and the access-log line."""
import os
import re
import time

from flask import g, request
from werkzeug.exceptions import NotFound

from deltallm.api import access, metering
from deltallm.api.body import BoundedInput, has_body
from deltallm.api.common import gateway
from deltallm.errors import PermissionDenied

OPEN_PREFIXES = ("/health", "/openapi.json")
ADMIN = {"admin", "admin_models", "admin_mcp"}
CLIENT_ID = re.compile(r"^[\w.:/+=-]{1,128}$")


def presented_key():
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    # Azure- and Anthropic-style SDKs send the key in their own headers.
    return request.headers.get("api-key") or request.headers.get("x-api-key")


def before():
    g.started = time.perf_counter()
    given = request.headers.get("x-request-id")
    # a client's id is kept when it is a plausible id, so it can be used to correlate logs
    g.request_id = given if given and CLIENT_ID.match(given) else f"req_{os.urandom(16).hex()}"
    g.call = None
    if request.environ.get("PATH_INFO", "").startswith("//"):
        # werkzeug matches `//v1/models` as `/v1/models`; an unknown route to us, like `/v1//models`
        request.routing_exception = NotFound()
    if request.routing_exception is not None or request.path.startswith(OPEN_PREFIXES):
        return  # unknown routes answer 404 with or without a key
    gw = gateway()
    g.principal = principal = gw.keys.authenticate(presented_key())
    if request.blueprint in ADMIN and not principal.is_master:
        raise PermissionDenied("The admin API needs the master key.")
    environ = request.environ
    if has_body(environ):
        # whoever reads the body (JSON or a multipart form) reads it within the time bound
        environ["wsgi.input"] = BoundedInput(environ, gw.settings.general["request_body_timeout"])


def after(response):
    headers = response.headers
    headers["x-request-id"] = g.get("request_id") or f"req_{os.urandom(16).hex()}"
    started = g.get("started")
    elapsed = time.perf_counter() - started if started is not None else 0.0
    call = g.get("call")
    if call is not None:
        headers["x-deltallm-overhead-ms"] = f"{(elapsed - call.upstream_s) * 1000:.2f}"
        if call.deployment is not None:
            headers["x-deltallm-deployment"] = call.deployment.id
        if call.fallback is not None:
            headers["x-deltallm-fallback"] = call.fallback
        if call.ticket is not None:
            headers.update(call.ticket.headers)  # x-ratelimit-*, on successes and errors alike
        if g.get("mcp_calls") is not None:
            headers["x-deltallm-mcp-calls"] = str(g.mcp_calls)  # MCP tool calls the gateway ran
    record = None
    if access.enabled():
        # the objects behind the proxies: the entry reads a dozen attributes
        record = access.entry(request._get_current_object(), g._get_current_object(), response, call,
                              elapsed)
    metered = call is not None and call.ticket is not None
    if response.is_streamed and (metered or record is not None):
        # settled and logged when the body has been sent (or the client left): the request context is
        # gone by then, so everything needed is captured now
        response.response = access.AfterClose(response.response, at_stream_end(
            call, metered, response.status_code, record, g.get("stream_tail"), started or time.perf_counter()))
        return response
    if metered:
        metering.settle(call, response.status_code)
    if record is not None:
        access.emit(record)
    return response


def at_stream_end(call, metered, status, record, tail, started):
    def finish():
        if metered:
            metering.settle(call, status)
        if record is not None:
            record["stream"] = tail is not None
            access.at_stream_end(record, call, tail, started)()
    return finish


def init_app(app):
    app.before_request(before)
    app.after_request(after)
