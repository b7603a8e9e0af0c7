"""Shared plumbing for provider adapters: pooled HTTP sessions, upstream error mapping, SSE reading."""
import email.utils
import logging
import time

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict

from deltallm.errors import (InvalidRequest, UpstreamAuthFailed, UpstreamError, UpstreamRateLimited,
                             UpstreamRejected, UpstreamTimeout)
from deltallm.providers.classify import classify

logger = logging.getLogger(__name__)

USER_AGENT = "deltallm/0.1"
# Sized for gevent: one worker holds many concurrent upstream connections (1,000 streams and more).
POOL_SIZE = 2048


class Call:
    """Per-request bookkeeping shared by the router and providers (never stored on a provider)."""

    __slots__ = ("request_id", "upstream_s", "deployment", "attempts", "deadline", "fallback", "may_use",
                 "fallbacks", "usage", "sink", "ticket", "units", "body", "text_chars", "streams",
                 "tokenizer")

    def __init__(self, request_id, deadline=None, may_use=None, fallbacks=None, sink=None):
        self.request_id = request_id
        self.upstream_s = 0.0
        self.deployment = None
        self.attempts = 0
        self.deadline = deadline      # time.monotonic() by which the whole request must be answered
        self.fallback = None          # the fallback group that answered, if one did
        self.may_use = may_use        # model name -> bool: the caller's access (fallback groups too)
        self.fallbacks = fallbacks    # the request's own fallback groups, replacing the configured ones
        self.usage = None             # the upstream usage, summed over the request's answers
        self.sink = sink or self      # where usage adds up (a legacy completion's prompts share one)
        self.ticket = None            # governance: the admitted request (limits, budget, usage record)
        self.units = {}               # what is billed besides tokens: images, characters, seconds
        self.body = None              # the request body, to estimate a cut stream's prompt tokens
        self.tokenizer = None         # ... with this model's tokenizer
        self.text_chars = 0           # streamed answer text seen, for a stream cut before its usage
        self.streams = []             # upstream streams still open, closed when the response ends

    def remaining(self):
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def add_usage(self, usage):
        """Add an upstream `usage` (chat or embeddings shape) to the request's total."""
        if not isinstance(usage, dict):
            return
        total = self.sink.usage
        if total is None:
            self.sink.usage = total = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                total[name] += value
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if isinstance(cached, int) and cached:
            details = total.setdefault("prompt_tokens_details", {"cached_tokens": 0})
            details["cached_tokens"] += cached


def make_transport():
    """requests' pooled transport, used without a Session.

    A Session re-merges settings, environment (proxies, netrc, CA bundle), cookies and hooks on every
    call - about a quarter of a proxied request's CPU in bench/. Upstream calls need none of it: the
    URL, headers and body are built here, there are no cookies or redirects, and proxies are not
    taken from the environment.
    """
    return HTTPAdapter(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)


def error_message(payload, default):
    """Best-effort (message, type, code, param) from an upstream error body of any common shape."""
    err = payload
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, list) and err:
            err = err[0]
    if isinstance(err, dict):
        message = err.get("message") or err.get("detail") or err.get("msg") or default
        etype = err.get("type") or err.get("status")
        return str(message), etype if isinstance(etype, str) else None, err.get("code"), err.get("param")
    if isinstance(err, str) and err:
        return err, None, None, None
    return default, None, None, None


def parse_json(body):
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


class Provider:
    """One upstream API family bound to one deployment.

    Subclasses implement `chat(call, body)` returning an OpenAI chat.completion dict and
    `chat_stream(call, body)` returning an iterator of OpenAI chat.completion.chunk dicts. The
    stream must already be open (status checked) when `chat_stream` returns, so failures before the
    first byte can be retried; it may end with a usage-only chunk (`choices: []`).
    """

    name = "base"
    default_api_base = None
    # how the deployment's api_key travels: (header, value template)
    key_header = ("Authorization", "Bearer {key}")

    def __init__(self, deployment):
        self.deployment = deployment
        self.transport = make_transport()
        self.api_base = (deployment.params.get("api_base") or self.default_api_base or "").rstrip("/")
        timeout = float(deployment.params.get("timeout") or 600)
        self.timeout = (min(10.0, timeout), timeout)
        stream_timeout = float(deployment.params.get("stream_timeout") or timeout)
        self.stream_timeout = (min(10.0, stream_timeout), stream_timeout)

    def use_headers(self, **fixed):
        """self.headers and self.stream_headers: JSON, the API's fixed headers, the deployment's key
        in `key_header`, then the config's `extra_headers` (config-only, so clients never steer them)."""
        params = self.deployment.params
        headers = {"Content-Type": "application/json", **fixed}
        if params.get("api_key"):
            headers[self.key_header[0]] = self.key_header[1].format(key=params["api_key"])
        headers.update(params.get("extra_headers") or {})
        self.headers = headers
        self.stream_headers = dict(headers, **{"Accept": "text/event-stream", "Accept-Encoding": "identity"})

    # -- HTTP -----------------------------------------------------------------------------
    def send(self, call, url, payload=None, *, headers=None, stream=False, method="POST", data=None):
        """Send one upstream request; raise the mapped GatewayError on any failure."""
        started = time.perf_counter()
        try:
            if payload is not None:
                data = orjson.dumps(payload)
            prepared = PreparedRequest()
            prepared.method, prepared.url, prepared.body = method, url, data
            prepared.headers = CaseInsensitiveDict(headers)
            prepared.headers.setdefault("User-Agent", USER_AGENT)
            if data is not None:
                prepared.headers["Content-Length"] = str(len(data))
            resp = self.transport.send(prepared, stream=stream,
                                       timeout=self.stream_timeout if stream else self.timeout)
            if resp.status_code >= 400:
                body = resp.content
                resp.close()
                raise self.map_error(resp.status_code, body, resp.headers)
            if not stream:
                resp.content  # read the body inside the timed section
            return resp
        except requests.Timeout as exc:
            raise UpstreamTimeout(f"{self.name} upstream timed out: {exc.__class__.__name__}") from None
        except requests.RequestException as exc:
            raise UpstreamError(f"could not reach the {self.name} upstream: {exc.__class__.__name__}") from None
        finally:
            call.upstream_s += time.perf_counter() - started

    def map_error(self, status, body, headers):
        """Map an upstream HTTP error to SPEC §3; subclasses may refine it."""
        message, etype, code, param = error_message(parse_json(body), f"{self.name} upstream returned HTTP {status}")
        return map_status(self.name, status, message, etype=etype, code=code, param=param,
                          retry_after=headers.get("retry-after"))

    # -- API ------------------------------------------------------------------------------
    def chat(self, call, body):
        raise NotImplementedError

    def chat_stream(self, call, body):
        raise NotImplementedError

    # Other endpoints: an adapter overrides what its API offers.
    def unsupported(self, what):
        return InvalidRequest(f"model `{self.deployment.model_name}` is served by {self.name}, which does not "
                              f"offer {what} through DeltaLLM", param="model", code="unsupported_model")

    def embeddings(self, call, body):
        """An OpenAI embeddings request -> an OpenAI `list` of embeddings."""
        raise self.unsupported("embeddings")

    def image_generation(self, call, body):
        """An OpenAI images request -> an OpenAI images response."""
        raise self.unsupported("image generation")

    def speech(self, call, body):
        """A speech request -> (iterator of audio bytes, content type or None)."""
        raise self.unsupported("text-to-speech")

    def transcription(self, call, fields, upload):
        """Form fields [(name, value)] and an upload (filename, bytes, type) -> (body bytes, content type)."""
        raise self.unsupported("transcription")


def map_status(provider, status, message, *, etype=None, code=None, param=None, retry_after=None):
    """The status-to-error rules shared by every provider, with the facts the router acts on."""
    if status in (401, 403):
        exc = UpstreamAuthFailed(f"{provider} upstream rejected the gateway's credentials "
                                 f"(HTTP {status}): {message}")
        exc.deployment_fault = True
        return exc
    if status == 429:
        exc = UpstreamRateLimited(message, headers={"Retry-After": retry_after} if retry_after else None)
        exc.retry_after = retry_after_seconds(retry_after)
        return exc
    if status in (408, 504):
        return UpstreamTimeout(message)
    if status >= 500:
        return UpstreamError(f"{provider} upstream error (HTTP {status}): {message}")
    exc = UpstreamRejected(message, status=status, type=etype or "invalid_request_error",
                           code=code if isinstance(code, str) else None,
                           param=param if isinstance(param, str) else None)
    exc.deployment_fault = status == 404  # the deployment's model or path is wrong, not the request
    exc.kind = classify(status, message, code)
    return exc


def retry_after_seconds(value):
    """An upstream Retry-After (seconds, or an HTTP date) in seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def iter_bytes(resp):
    """Yield body bytes as they arrive (no read-ahead buffering), chunked or not."""
    raw = resp.raw
    try:
        if raw.chunked and raw.supports_chunked_reads():
            yield from raw.read_chunked(decode_content=True)
        else:
            while True:
                data = raw.read1(65536)
                if not data:
                    break
                yield data
    except Exception as exc:  # urllib3/requests/socket errors vary by version
        raise UpstreamError(f"upstream stream broke: {exc.__class__.__name__}") from None
    finally:
        resp.close()


def iter_sse(resp):
    """Yield (event, data) pairs of a server-sent-event stream as each event completes."""
    buf = b""
    event, data = None, []
    for chunk in iter_bytes(resp):
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1:]
            if not line:
                if data:
                    yield event, b"\n".join(data)
                event, data = None, []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
            # comments (":") and id/retry fields are ignored
    if data:
        yield event, b"\n".join(data)
