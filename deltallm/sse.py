"""Server-sent events: encode OpenAI stream chunks and end streams cleanly, even on failure."""
import logging

import orjson

from deltallm.errors import GatewayError

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(obj, name=None):
    data = b"data: " + orjson.dumps(obj) + b"\n\n"
    return b"event: " + name.encode() + b"\n" + data if name else data


def error_event(exc, request_id):
    """The event that ends a stream which failed after its first byte (no [DONE] follows)."""
    if isinstance(exc, GatewayError):
        return event(exc.to_dict())
    logger.exception("request %s: stream failed", request_id)
    return event({"error": {"message": f"Internal error (request id {request_id}).",
                            "type": "server_error", "param": None, "code": None}})


def guarded(events, request_id, done=DONE):
    """Yield encoded events; a failure mid-stream becomes one error event and the stream ends."""
    try:
        for item in events:
            yield item
        if done:
            yield done
    except Exception as exc:  # noqa: BLE001 - every failure must end the stream readably
        yield error_event(exc, request_id)
    finally:
        close = getattr(events, "close", None)
        if close:
            close()
