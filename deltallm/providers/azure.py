"""Azure OpenAI: the OpenAI wire format addressed by deployment, `api-version` and an `api-key` header."""
from urllib.parse import quote

from deltallm.errors import ProviderMisconfigured
from deltallm.providers.openai import OpenAIProvider

# The newest GA data-plane version when this was written; override per deployment with `api_version`.
DEFAULT_API_VERSION = "2024-10-21"
STREAM_OPTIONS_SINCE = "2024-09-01"  # api-versions are dates, so they compare as strings


class AzureProvider(OpenAIProvider):
    """OpenAIProvider with Azure's URLs and key header; bodies and error shapes are OpenAI's."""

    name = "azure"
    # Azure keys go in api-key, never as a bearer token (an extra_headers Authorization, e.g. an
    # Entra ID token, still works).
    key_header = ("api-key", "{key}")

    def __init__(self, deployment):
        super().__init__(deployment)
        params = deployment.params
        if not params.get("api_base"):
            # Azure has no shared endpoint: every resource has its own host.
            raise ProviderMisconfigured(f"deployment {deployment.model_name!r} (azure/{deployment.model}) "
                                        "needs api_base, e.g. https://NAME.openai.azure.com")
        self.api_version = str(params.get("api_version") or DEFAULT_API_VERSION)
        if "stream_usage" not in params:
            # stream_options arrived with api-version 2024-09-01-preview; older versions answer every
            # stream that carries it with 400 "Unrecognized request argument supplied: stream_options"
            self.stream_usage = self.api_version >= STREAM_OPTIONS_SINCE
        base = self.api_base.removesuffix("/openai")  # tolerate the SDK-style ".../openai" base
        self.prefix = f"{base}/openai/deployments/{quote(deployment.model, safe='')}"

    def url(self, path):
        return f"{self.prefix}{path}?api-version={quote(self.api_version, safe='')}"

    def chat_stream(self, call, body):
        return drop_filter_only_chunks(super().chat_stream(call, body))

    def rerank(self, call, body):
        raise self.unsupported("rerank")  # Azure OpenAI has no rerank endpoint


def drop_filter_only_chunks(chunks):
    """Azure opens a stream with a chunk holding only `prompt_filter_results` (no choices, no usage,
    empty id/object); it is not an OpenAI chunk and would pass for a usage chunk, so it is dropped."""
    for chunk in chunks:
        if chunk.get("choices") or chunk.get("usage"):
            yield chunk
