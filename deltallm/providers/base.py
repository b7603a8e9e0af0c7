"""Shared plumbing for provider adapters: the upstream call under its deadline, and upstream error mapping."""
import email.utils
import logging
import socket
import time

import orjson
import requests

from deltallm.errors import (InvalidRequest, UpstreamAuthFailed, UpstreamError, UpstreamRateLimited,
                             UpstreamRejected, UpstreamTimeout)
from deltallm.providers.classify import classify
from deltallm.providers.redact import clean
from deltallm.providers.streams import iter_bytes, iter_sse, read_body  # noqa: F401 - adapters import them here
from deltallm.providers.transport import (CONNECT_CAP, DEFAULT_OPTIONS, AttemptDeadline, HeaderDict, Timer,
                                          UpstreamRequest, cooperative, display_host, make_transport, proxies_for,
                                          verify_for)

logger = logging.getLogger(__name__)

USER_AGENT = "deltallm/0.1"


class Call:
    """Per-request bookkeeping shared by the router and providers (never stored on a provider)."""

    __slots__ = ("request_id", "upstream_s", "deployment", "attempts", "deadline", "fallback", "may_use",
                 "fallbacks", "usage", "sink", "ticket", "units", "body", "text_chars", "streams",
                 "tokenizer", "answered", "endpoint")

    def __init__(self, request_id, deadline=None, may_use=None, fallbacks=None, sink=None, endpoint=None):
        self.request_id = request_id
        self.endpoint = endpoint      # the API endpoint called: the model's mode must serve it
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
        self.answered = False         # a model answer was produced: billed even if a later step fails

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
        for name, value in (usage.get("prompt_tokens_details") or {}).items():
            if name in ("cached_tokens", "cache_write_tokens") and isinstance(value, int) and value:
                details = total.setdefault("prompt_tokens_details", {"cached_tokens": 0})
                details[name] = details.get(name, 0) + value



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
    # reasoning_effort reaches the model (a Response echoes reasoning.effort only then)
    applies_reasoning_effort = False

    def __init__(self, deployment):
        self.deployment = deployment
        self.transport = make_transport()
        self.api_base = (deployment.params.get("api_base") or self.default_api_base or "").rstrip("/")
        self.timeout = float(deployment.params.get("timeout") or 600)
        self.stream_timeout = float(deployment.params.get("stream_timeout") or self.timeout)
        self.options = getattr(deployment, "http", None) or DEFAULT_OPTIONS
        self.cooperative = cooperative()
        self.use_network()

    def use_network(self):
        """Proxy, TLS verification and the host named in errors, for `api_base`: once, at startup.

        An adapter that settles its api_base later (Bedrock: from the region) calls this again."""
        params = self.deployment.params
        self.host = display_host(self.api_base) if self.api_base else self.name
        self.proxies = proxies_for(self.api_base, params, self.options) if self.api_base else None
        # plain-HTTP upstreams verify nothing: True spares requests a CA-bundle path check per call
        self.verify = verify_for(params, self.options) if self.api_base.startswith("https") else True
        if self.verify is False and self.api_base.startswith("https"):
            logger.warning("deployment %s (%s): TLS certificates of %s are not verified (ssl_verify: false)",
                           self.deployment.id, self.deployment.model_name, self.host)
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def use_headers(self, **fixed):
        """self.headers and self.stream_headers: JSON, the API's fixed headers, the deployment's key
        in `key_header`, then the config's `extra_headers` (config-only, so clients never steer them)."""
        params = self.deployment.params
        headers = {"Content-Type": "application/json", **fixed}
        if params.get("api_key"):
            headers[self.key_header[0]] = self.key_header[1].format(key=params["api_key"])
        headers.update(params.get("extra_headers") or {})
        if not any(name.lower() == "user-agent" for name in headers):
            headers["User-Agent"] = USER_AGENT
        self.headers = headers
        self.stream_headers = dict(headers, **{"Accept": "text/event-stream", "Accept-Encoding": "identity"})

    # -- HTTP -----------------------------------------------------------------------------
    def send(self, call, url, payload=None, *, headers=None, stream=False, method="POST", data=None):
        """Send one upstream request; raise the mapped GatewayError on any failure.

        `timeout` bounds the whole attempt (connect, send, headers and, unless streamed, the full
        body), within what is left of the request's deadline (`call.deadline`, across retries). A
        stream is returned open, with a timer (`resp.timer`) its readers restart as events arrive:
        `stream_timeout` bounds the silence between them.
        """
        started = time.perf_counter()
        now = time.monotonic()
        deadline = now + self.timeout
        if call.deadline is not None and call.deadline < deadline:
            deadline = call.deadline
        left = deadline - now
        if left <= 0:
            raise UpstreamTimeout(f"no time left to call the {self.name} upstream at {self.host} (timeout)")
        per_read = self.stream_timeout if stream else self.timeout
        timer = Timer(deadline, per_read)
        try:
            if payload is not None:
                data = orjson.dumps(payload)
            sent = HeaderDict(headers or ())
            if not dict.__contains__(sent, "User-Agent") and sent.find("user-agent") is None:
                sent["User-Agent"] = USER_AGENT  # the providers' own header sets have it already
            prepared = UpstreamRequest(method, url, sent, data)
            if isinstance(data, (bytes, bytearray)):
                sent["Content-Length"] = str(len(data))
            # any other body is an iterable (a streamed upload): sent chunked unless headers give its length
            # Under gevent one timer bounds the whole attempt; elsewhere the socket under the body
            # is armed with the deadline (streams are armed by their readers, see streams.py).
            armed = not self.cooperative
            with AttemptDeadline(left, self.cooperative):
                resp = self.transport.send(prepared, stream=True, timeout=(min(CONNECT_CAP, left), min(per_read, left)),
                                           verify=self.verify, proxies=self.proxies)
                if resp.status_code >= 400:
                    body = read_body(resp, timer, limit=self.options.max_event_bytes, armed=armed)
                    resp.close()
                elif not stream:
                    read_body(resp, timer, armed=armed)
            if stream and resp.status_code < 400:
                timer.deadline = time.monotonic() + per_read  # from here on: silence between events
                resp.timer, resp.max_event_bytes = timer, self.options.max_event_bytes
        except UpstreamTimeout:
            raise UpstreamTimeout(f"the {self.name} upstream at {self.host} did not answer within "
                                  f"{left:.3g} s (timeout)") from None
        except UpstreamError as exc:
            raise UpstreamError(f"the {self.name} upstream at {self.host}: {exc.message}") from None
        except (requests.Timeout, socket.timeout) as exc:
            raise UpstreamTimeout(f"the {self.name} upstream at {self.host} timed out: "
                                  f"{exc.__class__.__name__}") from None
        except requests.RequestException as exc:
            logger.warning("request %s: %s upstream at %s unreachable: %s", call.request_id, self.name,
                           self.host, clean(exc))
            raise UpstreamError(f"could not reach the {self.name} upstream at {self.host}: "
                                f"{connection_problem(exc)}") from None
        finally:
            call.upstream_s += time.perf_counter() - started
        if resp.status_code >= 400:
            raise self.map_error(resp.status_code, body, resp.headers)
        return resp

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

    def transcription(self, call, form):
        """A streamed multipart form (api.upload.Form) -> (body bytes, content type)."""
        raise self.unsupported("transcription")

    def translation(self, call, form):
        """A streamed multipart form (api.upload.Form) -> (body bytes, content type)."""
        raise self.unsupported("audio translation")

    def rerank(self, call, body):
        """A rerank request (schemas.rerank) -> the gateway's rerank response (providers.rerank)."""
        raise self.unsupported("rerank")


def connection_problem(exc):
    """What went wrong connecting, in words (the exception's own text may hold URLs and secrets)."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy refused or failed (ProxyError)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate verification failed (SSLError)"
    text = str(exc)
    for needle, words in (("Name or service not known", "the host name does not resolve"),
                          ("nodename nor servname", "the host name does not resolve"),
                          ("Temporary failure in name resolution", "the host name does not resolve"),
                          ("Connection refused", "connection refused"),
                          ("Connection reset", "connection reset"),
                          ("RemoteDisconnected", "the upstream closed the connection without answering")):
        if needle in text:
            return f"{words} ({exc.__class__.__name__})"
    return exc.__class__.__name__


def retry_after_seconds(value):
    """A Retry-After header (seconds or an HTTP date) as seconds from now, or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when else None


def map_status(provider, status, message, *, etype=None, code=None, param=None, retry_after=None):
    """The status-to-error rules shared by every provider, with the facts the router acts on.

    The upstream's own words are relayed capped and masked, and never for 401/403 (they may quote
    our provider key): `upstream_message` keeps them, cleaned, for the log.
    """
    message = clean(message)
    if status in (401, 403):
        exc = UpstreamAuthFailed(f"the {provider} upstream rejected the gateway's credentials (HTTP {status})")
        exc.deployment_fault = True
    elif status == 429:
        # relayed as the upstream said; without one, clients are still told to wait (SPEC §3)
        exc = UpstreamRateLimited(message, headers={"Retry-After": retry_after or "1"})
        exc.retry_after = retry_after_seconds(retry_after)
    elif status in (408, 504):
        exc = UpstreamTimeout(message)
    elif status == 409:  # a conflict on the upstream's side (SPEC §9: retried, then relayed)
        exc = UpstreamRejected(message, status=409, type=clean(etype) if etype else "invalid_request_error",
                               code=clean(code) if isinstance(code, str) else None, retryable=True)
    elif status >= 500:
        exc = UpstreamError(f"{provider} upstream error (HTTP {status}): {message}")
    else:
        exc = UpstreamRejected(message, status=status, type=clean(etype) if etype else "invalid_request_error",
                               code=clean(code) if isinstance(code, str) else None,
                               param=clean(param) if isinstance(param, str) else None)
        exc.deployment_fault = status == 404  # the deployment's model or path is wrong, not the request
        exc.kind = classify(status, message, code)  # context length / content policy: their own fallbacks
    exc.upstream_message = message
    return exc


def not_a_completion(provider, what="a chat completion"):
    return UpstreamError(f"{provider} upstream returned JSON that is not {what}")


def translated(provider, translate, *args):
    """translate(*args), with an upstream body of an unexpected shape (a crash inside the
    translation) reported as the upstream's fault (502), never as ours (500)."""
    try:
        return translate(*args)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
        logger.warning("%s upstream response of an unexpected shape: %s", provider, exc.__class__.__name__,
                       exc_info=True)
        raise not_a_completion(provider) from None
