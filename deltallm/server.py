"""The gunicorn gevent worker: malformed HTTP is answered with the OpenAI error envelope, not HTML.

The master loads this class before forking, so it imports nothing beyond gunicorn, gevent and
deltallm.errors (no database layer or HTTP client; see gunicorn_config.on_starting).
"""
import json
import uuid

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from deltallm.errors import GatewayError, InvalidRequest, PermissionDenied

# Kept in step with deltallm.api.body.CLOSE_CONNECTION, which the master must not import.
CLOSE_CONNECTION = "deltallm.close_connection"
REASONS = {400: "Bad Request", 403: "Forbidden", 414: "URI Too Long", 417: "Expectation Failed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented"}
# gunicorn's parse errors -> (status, code); anything else it raises while parsing is a 400.
PARSE_ERRORS = (
    (http_errors.LimitRequestLine, 414, "request_uri_too_long"),
    (http_errors.LimitRequestHeaders, 431, "request_headers_too_large"),
    (http_errors.UnsupportedTransferCoding, 501, "unsupported_transfer_coding"),
    (http_errors.ExpectationFailed, 417, "expectation_failed"),
    ((http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator,
      http_errors.InvalidChunkExtension), 400, "invalid_chunked_body"),
)
BODY_ERRORS = (http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator,
               http_errors.InvalidChunkExtension)
MAX_MESSAGE = 300


def envelope_for(exc):
    """The GatewayError to answer a request gunicorn could not parse (or failed on) with."""
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
        return GatewayError("The server had an error while processing your request.")
    if isinstance(exc, http_errors.ForbiddenProxyRequest):
        return PermissionDenied("Request forbidden.")
    if isinstance(exc, http_errors.ConfigurationProblem):
        return GatewayError(str(exc)[:MAX_MESSAGE])
    if isinstance(exc, http_errors.ParseException) or type(exc).__name__ == "SSLError":
        # the text names what was wrong; it is capped since it may quote the request
        message = f"Malformed HTTP request: {exc}"[:MAX_MESSAGE]
        for kinds, status, code in PARSE_ERRORS:
            if isinstance(exc, kinds):
                return InvalidRequest(message, status=status, code=code)
        return InvalidRequest(message, code="invalid_http_request")
    return GatewayError("The server had an error while processing your request.")


def response_bytes(error):
    body = json.dumps(error.to_dict()).encode()
    reason = REASONS.get(error.status, "Error")
    head = (f"HTTP/1.1 {error.status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"x-request-id: req_{uuid.uuid4().hex}\r\n\r\n")
    return head.encode() + body


def closing(app):
    """The WSGI app, plus: a request that left the connection unusable (a body read that timed out or
    was malformed) has it closed after the answer, instead of gunicorn reading on for the next request."""
    def wsgi(environ, start_response):
        result = app(environ, start_response)
        if environ.get(CLOSE_CONNECTION):
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if force_close is not None:
                force_close()
        return result
    wsgi.__wrapped__ = app      # the Flask app, for hooks that need its state (gunicorn_config.worker_exit)
    return wsgi


class Worker(GeventWorker):
    """gunicorn's gevent worker with JSON error answers and connection closing on broken bodies."""

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = closing(self.wsgi)

    def handle_error(self, req, client, addr, exc):
        if req is None and isinstance(exc, BODY_ERRORS):
            # Raised while gunicorn skipped the unread body of a request already answered (e.g. a 401):
            # a second answer on that connection would be read as the reply to the next request.
            self.log.debug("Closing connection after a malformed request body: %s", exc)
            return
        error = envelope_for(exc)
        if error.status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("",))[0], str(exc)[:MAX_MESSAGE])
        try:
            util.write(client, response_bytes(error))
        except Exception:  # noqa: BLE001 - the client may be gone already; nothing more to do
            self.log.debug("Failed to send error message.")
