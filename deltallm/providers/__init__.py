"""Registry of provider adapters, keyed by the model prefix in `deltallm_params.model`."""
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


def provider_class(prefix):
    """The adapter class for a prefix; KeyError for an unknown one."""
    if prefix in NATIVE:
        module, _, cls = NATIVE[prefix].partition(":")
        return getattr(importlib.import_module(module), cls)
    if prefix in FAMILIES:
        from deltallm.providers.openai import OpenAIProvider
        return OpenAIProvider
    raise KeyError(prefix)
