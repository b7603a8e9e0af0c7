"""AWS Bedrock via the SigV4-signed Converse and ConverseStream APIs, translated to and from OpenAI chat."""
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import orjson

from deltallm.errors import ProviderMisconfigured, UpstreamError
from deltallm.providers.base import Provider, map_status, not_a_completion, parse_json, translated
from deltallm.providers.streams import iter_frames
from deltallm.providers.bedrock_request import to_request
from deltallm.providers.embedding_shapes import embedding_list, texts_of
from deltallm.providers.native_embeddings import (bedrock_cohere_request, bedrock_cohere_vectors, bedrock_kind,
                                                  titan_request, titan_vector)

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
# Bedrock error kinds (x-amzn-ErrorType, or :exception-type inside a stream, compared lower-case)
# mapped to the status that tells the router what to do: quota errors come as 400 but are retryable,
# model errors come as 424 but are the upstream's fault, stream exceptions carry no status at all.
KIND_STATUS = {
    "validationexception": 400, "resourcenotfoundexception": 404,
    "accessdeniedexception": 403, "unrecognizedclientexception": 403,
    "throttlingexception": 429, "servicequotaexceededexception": 429, "modelnotreadyexception": 429,
    "modeltimeoutexception": 408,
    "modelerrorexception": 502, "modelstreamerrorexception": 502,
    "internalserverexception": 500, "serviceunavailableexception": 503,
}


# -- Converse response / stream events -> OpenAI ---------------------------------------------------
def from_response(deployment, data, response_id=None):
    """An OpenAI chat.completion for a Converse response."""
    text, tool_calls = [], []
    for block in ((data.get("output") or {}).get("message") or {}).get("content") or []:
        if "text" in block:
            text.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            tool_calls.append({"id": use.get("toolUseId"), "type": "function", "function": {
                "name": use.get("name"), "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        # reasoningContent, citations ...: no OpenAI chat equivalent, dropped
    message = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None,
               "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": response_id or new_id(), "object": "chat.completion", "created": int(time.time()),
            "model": deployment.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": STOP_REASONS.get(data.get("stopReason"), "stop")}],
            "usage": usage(data.get("usage"))}


def usage(raw):
    raw = raw or {}
    cached = raw.get("cacheReadInputTokens") or 0
    prompt = (raw.get("inputTokens") or 0) + cached + (raw.get("cacheWriteInputTokens") or 0)
    completion = raw.get("outputTokens") or 0
    result = {"prompt_tokens": prompt, "completion_tokens": completion,
              "total_tokens": prompt + completion}
    if cached:
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    return result


def new_id():
    return "chatcmpl-" + uuid.uuid4().hex


class StreamState:
    """What translating one ConverseStream remembers between events."""

    def __init__(self, deployment, response_id=None):
        self.id = response_id or new_id()
        self.model = deployment.model
        self.created = int(time.time())
        self.role_sent = False
        self.finished = False
        self.tools = {}  # Converse contentBlockIndex -> OpenAI tool_calls index
        self.filled = set()  # tool blocks whose input got any JSON text

    def chunk(self, delta, finish_reason=None, **extra):
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None,
                                             "finish_reason": finish_reason}]
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": choices, **extra}


def from_stream_event(state, event, payload):
    """The OpenAI chunks (often none) that one ConverseStream event stands for."""
    out = []
    if not state.role_sent and event in ("messageStart", "contentBlockStart", "contentBlockDelta",
                                         "messageStop"):
        state.role_sent = True
        out.append(state.chunk({"role": "assistant", "content": ""}))
    index = payload.get("contentBlockIndex")
    if event == "contentBlockStart":
        use = (payload.get("start") or {}).get("toolUse")
        if use:
            state.tools[index] = len(state.tools)
            out.append(state.chunk({"tool_calls": [{
                "index": state.tools[index], "id": use.get("toolUseId"), "type": "function",
                "function": {"name": use.get("name"), "arguments": ""}}]}))
    elif event == "contentBlockDelta":
        delta = payload.get("delta") or {}
        if delta.get("text"):
            out.append(state.chunk({"content": delta["text"]}))
        elif "toolUse" in delta and index in state.tools:
            arguments = delta["toolUse"].get("input") or ""
            state.filled.update([index] if arguments else [])
            out.append(state.chunk({"tool_calls": [{"index": state.tools[index], "function": {
                "arguments": arguments}}]}))
    elif event == "contentBlockStop" and index in state.tools and index not in state.filled:
        # a tool called without input streams no JSON, which would leave the client with arguments
        # "" (json.loads fails); OpenAI and the non-streamed answer say "{}"
        out.append(state.chunk({"tool_calls": [{"index": state.tools[index], "function": {"arguments": "{}"}}]}))
    elif event == "messageStop":
        state.finished = True
        out.append(state.chunk({}, STOP_REASONS.get(payload.get("stopReason"), "stop")))
    elif event == "metadata" and payload.get("usage"):
        out.append(state.chunk(None, usage=usage(payload["usage"])))
    return out


# -- errors ---------------------------------------------------------------------------------------
def bedrock_error(kind, status, message, retry_after=None):
    """A GatewayError for a Bedrock error kind (e.g. "ThrottlingException:http://...")."""
    kind = (kind or "").split(":")[0].rpartition("#")[2]
    status = KIND_STATUS.get(kind.lower(), status)
    return map_status("bedrock", status, message, code=kind or None, retry_after=retry_after)


def aws_message(payload, default):
    return str(payload.get("message") or payload.get("Message") or default)


def as_dict(value):
    return value if isinstance(value, dict) else {}


def misconfigured(message):
    return ProviderMisconfigured(message)


def load_botocore():
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.eventstream
        import botocore.session
    except ImportError:
        raise misconfigured("bedrock deployments need botocore: pip install 'deltallm[bedrock]'") from None
    return botocore


# -- HTTP -----------------------------------------------------------------------------------------
MAX_CONCURRENT = 16  # Titan calls of one embeddings request in flight at once


class BedrockProvider(Provider):
    """Converse for chat, ConverseStream (binary AWS event stream) for streaming chat."""

    name = "bedrock"

    def __init__(self, deployment):
        super().__init__(deployment)
        self.botocore = botocore = load_botocore()
        params = deployment.params
        self.region = params.get("aws_region_name")
        key_id, secret = params.get("aws_access_key_id"), params.get("aws_secret_access_key")
        if key_id or secret:
            if not (key_id and secret):
                raise misconfigured(f"deployment {deployment.model_name!r} sets only one of "
                                    "aws_access_key_id and aws_secret_access_key")
            self.credentials = botocore.credentials.Credentials(
                key_id, secret, params.get("aws_session_token"))
        else:  # the standard AWS chain: env, shared files, SSO, container and instance roles
            session = botocore.session.Session(profile=params.get("aws_profile_name"))
            self.credentials = session.get_credentials()
            self.region = self.region or session.get_config_variable("region")
        if not self.credentials:
            raise misconfigured(f"deployment {deployment.model_name!r} has no AWS credentials "
                                "(params or the standard AWS chain)")
        if not self.region:
            raise misconfigured(f"deployment {deployment.model_name!r} needs aws_region_name")
        self.api_base = (self.api_base or params.get("aws_bedrock_runtime_endpoint") or
                         f"https://bedrock-runtime.{self.region}.amazonaws.com").rstrip("/")
        self.model_path = f"/model/{quote(deployment.model, safe='')}"
        self.use_network()  # for the api_base settled just now

    def post(self, call, action, request, stream=False):
        """Sign exactly the bytes sent: SigV4 covers the body hash, host, date and content headers."""
        url = f"{self.api_base}{self.model_path}/{action}"
        data = orjson.dumps(request)
        accept = "application/vnd.amazon.eventstream" if stream else "application/json"
        signed = self.botocore.awsrequest.AWSRequest(
            method="POST", url=url, data=data, headers={"Content-Type": "application/json", "Accept": accept})
        credentials = self.credentials.get_frozen_credentials()  # refreshes role credentials if due
        self.botocore.auth.SigV4Auth(credentials, "bedrock", self.region).add_auth(signed)
        headers = dict(signed.headers.items())
        if stream:
            headers["Accept-Encoding"] = "identity"  # unsigned, so free to add
        return self.send(call, url, headers=headers, stream=stream, data=data)

    def map_error(self, status, body, headers):
        payload = as_dict(parse_json(body))
        message = aws_message(payload, f"bedrock upstream returned HTTP {status}")
        kind = headers.get("x-amzn-ErrorType") or payload.get("__type")
        return bedrock_error(kind, status, message, headers.get("retry-after"))

    def chat(self, call, body):
        resp = self.post(call, "converse", to_request(self.deployment, body))
        data = parse_json(resp.content)
        if not isinstance(data, dict):
            raise UpstreamError("bedrock upstream returned a body that is not JSON")
        if not isinstance(as_dict(data.get("output")).get("message"), dict):
            raise not_a_completion("bedrock", "a Converse response")
        return translated("bedrock", from_response, self.deployment, data, response_id(resp))

    def embeddings(self, call, body):
        """InvokeModel: Titan takes one text per call (sent concurrently), Cohere embed the list at once."""
        kind = bedrock_kind(self.deployment.model)
        if kind is None:
            raise self.unsupported("embeddings for this model (Titan and Cohere embed models only)")
        texts = texts_of(body, self.name)
        if kind == "cohere":
            resp = self.post(call, "invoke", bedrock_cohere_request(texts, body, self.deployment.model_info))
            vectors = translated("bedrock", bedrock_cohere_vectors, parse_json(resp.content), len(texts))
            tokens = resp.headers.get("x-amzn-bedrock-input-token-count") or "0"
            return embedding_list(vectors, self.deployment.model, int(tokens) if tokens.isdigit() else 0, body)
        payloads = [titan_request(self.deployment.model, text, body) for text in texts]

        def one(payload):
            return translated("bedrock", titan_vector, parse_json(self.post(call, "invoke", payload).content))
        if len(payloads) == 1:
            answers = [one(payloads[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(len(payloads), MAX_CONCURRENT)) as pool:
                answers = list(pool.map(one, payloads))
        return embedding_list([v for v, _ in answers], self.deployment.model, sum(t for _, t in answers), body)

    def chat_stream(self, call, body):
        resp = self.post(call, "converse-stream", to_request(self.deployment, body), stream=True)
        events = iter_events(resp, self.botocore.eventstream)
        # Read the first event now: an exception event before any output is raised from here,
        # where the router can still retry or fail over.
        first = next(events, None)
        if first is None:
            raise UpstreamError("bedrock upstream closed the stream without any event")
        return translate(StreamState(self.deployment, response_id(resp)), first, events)


def response_id(resp):
    request_id = resp.headers.get("x-amzn-RequestId")
    return f"chatcmpl-{request_id}" if request_id else new_id()


def translate(state, first, events):
    try:
        yield from translated("bedrock", from_stream_event, state, *first)
        for event in events:
            yield from translated("bedrock", from_stream_event, state, *event)
    finally:
        events.close()
    if not state.finished:
        raise UpstreamError("bedrock upstream stream ended before messageStop")


def iter_events(resp, eventstream):
    """(event type, payload) for each application/vnd.amazon.eventstream frame as it arrives.

    Frames are cut by iter_frames (bounded, linear) and each is parsed whole by botocore."""
    buffer = eventstream.EventStreamBuffer()
    for frame in iter_frames(resp):
        buffer.add_data(frame)
        try:
            messages = list(buffer)
        except eventstream.ParserError as exc:  # bad CRC or lengths: the stream is corrupt
            raise UpstreamError("bedrock upstream sent a malformed event stream: "
                                f"{exc.__class__.__name__}") from None
        for message in messages:
            headers = message.headers
            payload = as_dict(parse_json(message.payload))
            kind = headers.get(":message-type")
            if kind == "event":
                yield headers.get(":event-type"), payload
            elif kind == "exception":
                raise bedrock_error(headers.get(":exception-type"), 502,
                                    aws_message(payload, "stream exception"))
            elif kind == "error":
                raise bedrock_error(headers.get(":error-code"), 502,
                                    str(headers.get(":error-message") or "stream error"))
