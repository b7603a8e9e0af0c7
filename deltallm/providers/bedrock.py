"""AWS Bedrock via the SigV4-signed Converse and ConverseStream APIs, translated to and from OpenAI chat."""
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import orjson

from deltallm.errors import ProviderMisconfigured, UpstreamError
from deltallm.providers.base import Provider, map_status, not_a_completion, parse_json, translated
from deltallm.providers.streams import iter_frames
from deltallm.providers.bedrock_claude import answer_tool  # noqa: F401 - tests reach it here
from deltallm.providers.bedrock_request import to_request
from deltallm.providers.bedrock_response import (StreamState, from_response, from_stream_event,  # noqa: F401
                                                 new_id, usage)
from deltallm.providers.embedding_shapes import embedding_list, texts_of
from deltallm.providers.native_embeddings import (bedrock_cohere_request, bedrock_cohere_vectors, bedrock_kind,
                                                  titan_request, titan_vector)

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
    # as Claude thinking (bedrock_claude); other models refuse reasoning_effort with a 400
    applies_reasoning_effort = True

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
        request = to_request(self.deployment, body)
        resp = self.post(call, "converse", request)
        data = parse_json(resp.content)
        if not isinstance(data, dict):
            raise UpstreamError("bedrock upstream returned a body that is not JSON")
        if not isinstance(as_dict(data.get("output")).get("message"), dict):
            raise not_a_completion("bedrock", "a Converse response")
        return translated("bedrock", from_response, self.deployment, data, response_id(resp),
                          answer_tool(body, request))

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
        request = to_request(self.deployment, body)
        resp = self.post(call, "converse-stream", request, stream=True)
        events = iter_events(resp, self.botocore.eventstream)
        # Read up to the first event after messageStart now, and translate it: an exception event, or a
        # stop with nothing usable (malformed output) before any content, is raised from here, where
        # the router can still retry or fail over.
        state = StreamState(self.deployment, response_id(resp), answer_tool(body, request))
        head = []
        try:
            for event in events:
                head.extend(translated("bedrock", from_stream_event, state, *event))
                if event[0] != "messageStart":
                    break
            else:
                if not state.role_sent:
                    raise UpstreamError("bedrock upstream closed the stream without any event")
        except BaseException:
            events.close()
            raise
        return translate(state, head, events)


def response_id(resp):
    request_id = resp.headers.get("x-amzn-RequestId")
    return f"chatcmpl-{request_id}" if request_id else new_id()


def translate(state, head, events):
    try:
        yield from head
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
