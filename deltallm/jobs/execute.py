"""Run one batch line through the normal router, billed to the batch's key, and shape its result.

The key's rate limits are obeyed by waiting (a rate-limited line never fails for that); a retryable
upstream failure that outlasts the router's own retries is tried again after a backoff; anything else
is the line's error, with its status and error body.
"""
import logging
import os
import threading

import orjson

from deltallm.errors import GatewayError, PermissionDenied, RateLimited
from deltallm.governance.gate import settle
from deltallm.governance.limits import LimiterUnavailable
from deltallm.jobs.shapes import answered
from deltallm.operations import OPERATIONS, request_fallbacks
from deltallm.providers.base import Call

logger = logging.getLogger(__name__)
RETRIES = 3          # tries of a line after a retryable failure, each after the router's own retries
BACKOFF = 1.0        # seconds before the first of them; doubled each time
MAX_WAIT = 60.0      # a rate-limited line looks at the batch (cancelled? expired?) at least this often


def wait(stop, seconds):
    """Sleep `seconds` unless the batch is stopping; True when it is."""
    return stop.wait(seconds) if seconds > 0 else stop.is_set()


def retry_after(exc, default):
    value = exc.headers.get("Retry-After") or exc.headers.get("retry-after") or exc.retry_after
    try:
        return min(max(float(value), 0.1), MAX_WAIT)
    except (TypeError, ValueError):
        return default


def run_item(gw, principal, batch, item, stop=None):
    """(state, result line) for one item: ("done" | "failed", line), or None when the batch stopped
    (cancelled, expired, lease lost) before the line had an answer: it stays pending."""
    stop = stop or threading.Event()
    operation = OPERATIONS[batch.endpoint]
    backoff, tries = BACKOFF, 0
    while not stop.is_set():
        body = orjson.loads(item.body)
        request_id = f"req_{os.urandom(16).hex()}"
        call = None
        try:
            fallbacks = request_fallbacks(body)
            model = body["model"]
            if not principal.may_use_model(model):
                raise PermissionDenied(f"This key is not allowed to use model `{model}`.", param="model")
            call = Call(request_id, may_use=principal.may_use_model, fallbacks=fallbacks, endpoint=batch.endpoint)
            gw.admit(call, principal, model, body, endpoint=batch.endpoint, batch_id=batch.id)
            result = operation.run(gw, call, body)
        except (RateLimited, LimiterUnavailable) as exc:  # the key's limits: wait (an exhausted budget fails)
            if call is not None:
                settle(call, exc.status)
            if wait(stop, retry_after(exc, 1.0)):
                return None
            continue
        except GatewayError as exc:
            if call is not None:
                settle(call, exc.status)
            if exc.retryable and tries < RETRIES:
                tries += 1
                if wait(stop, backoff):
                    return None
                backoff *= 2
                continue
            return "failed", answered(item.custom_id, request_id, exc.status, exc.to_dict())
        except Exception:  # noqa: BLE001 - one broken line must not stop the batch
            if call is not None:
                settle(call, 500)
            logger.exception("batch %s line %s failed in the gateway", batch.id, item.line)
            error = GatewayError("The gateway failed while running this request.")
            return "failed", answered(item.custom_id, request_id, 500, error.to_dict())
        settle(call, 200)
        return "done", answered(item.custom_id, request_id, 200, result)
    return None
