"""OpenAI and every OpenAI-compatible upstream (vLLM, Ollama, Groq, Mistral, Together, ...)."""
import orjson

from deltallm.errors import GatewayError, UpstreamError
from deltallm.providers.base import Provider, error_message, iter_bytes, iter_sse, not_a_completion, parse_json
from deltallm.providers import rerank
from deltallm.providers.redact import clean
from deltallm.providers.families import CHAT_REWRITES, FAMILIES, GATEWAY_ONLY, METADATA_FAMILIES, RERANK_API
from deltallm.schemas.rerank import document_texts


# What native adapters return on assistant messages (Gemini/Bedrock reasoning) and clients echo back in
# their history: OpenAI-compatible upstreams refuse them (DeepSeek answers 400 to reasoning_content in
# input), so a follow-up turn routed to one of them in a mixed group goes without.
REASONING_ECHO = frozenset({"reasoning_content", "thinking_blocks"})


class OpenAIProvider(Provider):
    """Pass-through: the request goes up as sent (unknown fields included), with our model and key."""

    name = "openai"
    applies_reasoning_effort = True  # passed through as sent

    def __init__(self, deployment):
        family = FAMILIES.get(deployment.provider, FAMILIES["openai"])
        self.default_api_base = family[0]
        super().__init__(deployment)
        self.name = deployment.provider
        params = deployment.params
        self.stream_usage = bool(params.get("stream_usage", family[1]))
        self.use_headers(**({"OpenAI-Organization": params["organization"]} if params.get("organization") else {}))
        # fields never forwarded, and the family's chat rewrites: settled once per deployment
        self.gateway_only = GATEWAY_ONLY if deployment.provider in METADATA_FAMILIES else GATEWAY_ONLY + ("metadata",)
        self.rewrites = CHAT_REWRITES.get(deployment.provider, {})

    def url(self, path):
        return self.api_base + path

    def prepare(self, body):
        """The upstream JSON body: the client's, with the deployment's model name."""
        payload = dict(body)
        payload["model"] = self.deployment.model
        for name in self.gateway_only:
            payload.pop(name, None)
        return payload

    def chat_payload(self, body):
        """`prepare`, then the family's rewrites (renamed or dropped fields) for its chat endpoint."""
        payload = self.prepare(body)
        messages = payload.get("messages")
        if isinstance(messages, list) and any(isinstance(m, dict) and REASONING_ECHO & m.keys() for m in messages):
            payload["messages"] = [{k: v for k, v in m.items() if k not in REASONING_ECHO}
                                   if isinstance(m, dict) else m for m in messages]
        for name, new in self.rewrites.items():
            if name in payload:
                value = payload.pop(name)
                if new is not None and value is not None and payload.get(new) is None:
                    payload[new] = value
        return payload

    def chat(self, call, body):
        payload = self.chat_payload(body)
        resp = self.send(call, self.url("/chat/completions"), payload, headers=self.headers)
        return completion(decode_json(resp.content, self.name), self.name)

    def chat_stream(self, call, body):
        payload = self.chat_payload(body)
        payload["stream"] = True
        if self.stream_usage:
            options = dict(payload.get("stream_options") or {})
            options["include_usage"] = True
            payload["stream_options"] = options
        resp = self.send(call, self.url("/chat/completions"), payload,
                         headers=self.stream_headers, stream=True)
        return iter_chunks(resp, self.name)

    def post_json(self, call, path, body):
        """Any other JSON endpoint (embeddings, images, rerank ...) passed through as-is."""
        resp = self.send(call, self.url(path), self.prepare(body), headers=self.headers)
        data = decode_json(resp.content, self.name)
        if not isinstance(data, dict):
            raise not_a_completion(self.name, "a JSON object")
        return data

    def embeddings(self, call, body):
        return self.post_json(call, "/embeddings", body)

    def image_generation(self, call, body):
        return self.post_json(call, "/images/generations", body)

    def rerank(self, call, body):
        """`/rerank` in the shape `rerank_api` names (the family's default: Cohere/Jina's)."""
        params = self.deployment.params
        shape = params.get("rerank_api") or RERANK_API.get(self.deployment.provider, "cohere")
        texts = document_texts(body)
        payload = rerank.SHAPES[shape](body, self.deployment.model, texts)
        resp = self.send(call, self.url("/rerank"), payload, headers=self.headers)
        data = decode_json(resp.content, self.name)
        out, units = rerank.response(self.name, data, shape, body, texts, self.deployment.model)
        call.units["search_units"] = units
        return out

    def speech(self, call, body):
        resp = self.send(call, self.url("/audio/speech"), self.prepare(body), headers=self.headers, stream=True)
        return iter_bytes(resp), resp.headers.get("Content-Type")

    def transcription(self, call, form):
        return self.audio_form(call, "/audio/transcriptions", form)

    def translation(self, call, form):
        return self.audio_form(call, "/audio/translations", form)

    def audio_form(self, call, path, form):
        """The form (its file streamed, see api.upload) to `path`, with our model; (body, content type)."""
        data, length = form.body(self.deployment.model)
        headers = {k: v for k, v in self.headers.items() if k != "Content-Type"}
        headers["Content-Type"] = form.content_type()
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            resp = self.send(call, self.url(path), data=data, headers=headers)
        except GatewayError as exc:
            if form.started:  # the upload is gone: no other deployment can be sent it
                exc.retryable, exc.deployment_fault, exc.kind = False, False, None
            raise
        audio_usage(call, resp)
        return resp.content, resp.headers.get("Content-Type")


def audio_usage(call, resp):
    """What a JSON transcription reports: token usage (gpt-4o-transcribe) or seconds of audio (whisper)."""
    if "json" not in (resp.headers.get("Content-Type") or ""):
        return
    data = parse_json(resp.content)
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict) and usage.get("type") == "tokens":
        prompt, completion = usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
        if isinstance(prompt, int) and isinstance(completion, int):
            call.add_usage({"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion})
    seconds = usage.get("seconds") if isinstance(usage, dict) else None
    if seconds is None and isinstance(data, dict):
        seconds = data.get("duration")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        call.units["seconds"] = float(seconds)


def decode_json(content, provider):
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{provider} upstream returned a body that is not JSON") from None


def completion(data, provider):
    """`data` if it has the shape of a chat.completion (choices of messages), else a 502: the
    translations to completions and responses read these fields, and a client must not get a 200
    for `[1,2,3]` or `{}`."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message"), dict)
            and isinstance(c["message"].get("content"), (str, type(None))) for c in choices):
        raise not_a_completion(provider)
    if not isinstance(data.get("usage"), (dict, type(None))):
        raise not_a_completion(provider)
    return data


def chunk_of(data, provider):
    """A chat.completion.chunk dict, or an UpstreamError for any other JSON."""
    chunk = decode_json(data, provider)
    if not isinstance(chunk, dict):
        raise not_a_completion(provider, "a chat.completion.chunk")
    choices = chunk.get("choices")
    if choices is not None and not (isinstance(choices, list) and all(
            isinstance(c, dict) and isinstance(c.get("delta", {}), dict) for c in choices)):
        raise not_a_completion(provider, "a chat.completion.chunk")
    return chunk


def iter_chunks(resp, provider):
    """OpenAI SSE -> chunk dicts, ending at [DONE]; an in-stream error event raises, and so does a
    stream that stops before any choice finished (a cut connection must not pass for an answer)."""
    finished = False
    for _event, data in iter_sse(resp):
        if data == b"[DONE]":
            return
        chunk = chunk_of(data, provider)
        if "error" in chunk and "choices" not in chunk:
            message = error_message(chunk, f"{provider} upstream sent an error event")[0]
            raise UpstreamError(f"{provider} upstream stream error: {clean(message)}")
        finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
        yield chunk
    if not finished:
        raise UpstreamError(f"{provider} upstream stream ended before the answer was complete")
