"""Registry of provider adapters, keyed by the model prefix in `deltallm_params.model`."""
import functools
import importlib

from deltallm.providers.families import FAMILIES

# prefix -> "module:Class"; native APIs are imported only when a deployment uses them.
NATIVE = {
    "mock": "deltallm.providers.mock:MockProvider",
    "anthropic": "deltallm.providers.anthropic:AnthropicProvider",
    "gemini": "deltallm.providers.gemini:GeminiProvider",
    "bedrock": "deltallm.providers.bedrock:BedrockProvider",
    "azure": "deltallm.providers.azure:AzureProvider",
    "cohere": "deltallm.providers.cohere:CohereProvider",
}


def known_prefixes():
    return set(FAMILIES) | set(NATIVE)


@functools.cache
def provider_class(prefix):
    """The adapter class for a prefix; KeyError for an unknown one. Native APIs that know only tools
    get the legacy `functions` fields translated (OpenAI-compatible upstreams still take them)."""
    if prefix in NATIVE:
        module, _, cls = NATIVE[prefix].partition(":")
        cls = getattr(importlib.import_module(module), cls)
        from deltallm.translate.legacy import NATIVE_TOOLS_ONLY, accepting_functions
        return accepting_functions(cls) if prefix in NATIVE_TOOLS_ONLY else cls
    if prefix in FAMILIES:
        from deltallm.providers.openai import OpenAIProvider
        return OpenAIProvider
    raise KeyError(prefix)
