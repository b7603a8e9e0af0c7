"""OpenAI and every OpenAI-compatible upstream (vLLM, Ollama, Groq, Mistral, Together, ...)."""
import orjson

from deltallm.errors import UpstreamError
from deltallm.providers.base import Provider, error_message, iter_sse

# prefix -> (default api_base, accepts stream_options.include_usage)
FAMILIES = {
    "openai": ("https://api.openai.com/v1", True),
    "custom_openai": ("http://127.0.0.1:8000/v1", True),
    "vllm": ("http://127.0.0.1:8000/v1", True),
    "hosted_vllm": ("http://127.0.0.1:8000/v1", True),
    "ollama": ("http://127.0.0.1:11434/v1", True),
    "lm_studio": ("http://127.0.0.1:1234/v1", True),
    "groq": ("https://api.groq.com/openai/v1", True),
    "mistral": ("https://api.mistral.ai/v1", False),
    "together": ("https://api.together.xyz/v1", True),
    "together_ai": ("https://api.together.xyz/v1", True),
    "openrouter": ("https://openrouter.ai/api/v1", True),
    "deepseek": ("https://api.deepseek.com/v1", True),
    "fireworks": ("https://api.fireworks.ai/inference/v1", True),
    "fireworks_ai": ("https://api.fireworks.ai/inference/v1", True),
    "perplexity": ("https://api.perplexity.ai", False),
    "xai": ("https://api.x.ai/v1", True),
    "cerebras": ("https://api.cerebras.ai/v1", True),
    "deepinfra": ("https://api.deepinfra.com/v1/openai", True),
    "jina": ("https://api.jina.ai/v1", False),
    "voyage": ("https://api.voyageai.com/v1", False),
}


class OpenAIProvider(Provider):
    """Pass-through: the request goes up as sent (unknown fields included), with our model and key."""

    name = "openai"

    def __init__(self, deployment):
        family = FAMILIES.get(deployment.provider, FAMILIES["openai"])
        self.default_api_base = family[0]
        super().__init__(deployment)
        self.name = deployment.provider
        params = deployment.params
        self.stream_usage = bool(params.get("stream_usage", family[1]))
        self.headers = {"Content-Type": "application/json"}
        if params.get("api_key"):
            self.headers["Authorization"] = f"Bearer {params['api_key']}"
        if params.get("organization"):
            self.headers["OpenAI-Organization"] = params["organization"]
        self.headers.update(params.get("extra_headers") or {})
        self.stream_headers = dict(self.headers, **{"Accept": "text/event-stream",
                                                    "Accept-Encoding": "identity"})

    def url(self, path):
        return self.api_base + path

    def prepare(self, body):
        """The upstream JSON body: the client's, with the deployment's model name."""
        payload = dict(body)
        payload["model"] = self.deployment.model
        return payload

    def chat(self, call, body):
        payload = self.prepare(body)
        resp = self.send(call, self.url("/chat/completions"), payload, headers=self.headers)
        return decode_json(resp.content, self.name)

    def chat_stream(self, call, body):
        payload = self.prepare(body)
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
        return decode_json(resp.content, self.name)


def decode_json(content, provider):
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"{provider} upstream returned a body that is not JSON") from None


def iter_chunks(resp, provider):
    """OpenAI SSE -> chunk dicts, ending at [DONE]; an in-stream error event raises."""
    for _event, data in iter_sse(resp):
        if data == b"[DONE]":
            return
        chunk = decode_json(data, provider)
        if "error" in chunk and "choices" not in chunk:
            message = error_message(chunk, f"{provider} upstream sent an error event")[0]
            raise UpstreamError(f"{provider} upstream stream error: {message}")
        yield chunk
