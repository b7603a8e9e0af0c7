"""One error handler: every failure on every route becomes the OpenAI error envelope."""
import logging

from flask import g, request
from werkzeug.exceptions import HTTPException

from deltallm.api.common import json_response
from deltallm.errors import (GatewayError, InvalidRequest, MethodNotAllowed, NotFound,
                             RequestTooLarge)

logger = logging.getLogger(__name__)


def render(exc):
    response = json_response(exc.to_dict(), exc.status)
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def raw_path():
    """The path as sent: werkzeug's request.path turns a leading `//` into `/`."""
    path = request.environ.get("PATH_INFO", "")
    return path[:300] if path.startswith("//") else request.path[:300]


def from_http(exc):
    """Werkzeug's HTML errors (routing, size, parsing) as gateway errors."""
    if exc.code == 404:
        return NotFound(f"Unknown request URL: {request.method} {raw_path()}. Please check the URL "
                        "for typos, or see the docs at /v1/models for the models you can call.")
    if exc.code == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed for {request.path}.")
    if exc.code == 413:
        return RequestTooLarge("The request body is larger than this gateway accepts.")
    if exc.code and 400 <= exc.code < 500:
        return InvalidRequest(exc.description or exc.name, status=exc.code)
    return GatewayError(exc.description or exc.name, status=exc.code or 500)


def handle_gateway_error(exc):
    return render(exc)


def handle_http_error(exc):
    return render(from_http(exc))


def handle_unexpected(exc):
    request_id = getattr(g, "request_id", None)
    logger.exception("request %s: unhandled error", request_id)
    return render(GatewayError(f"The server had an error while processing your request "
                               f"(request id {request_id})."))


def init_app(app):
    app.register_error_handler(GatewayError, handle_gateway_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
