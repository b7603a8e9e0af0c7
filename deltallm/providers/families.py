"""OpenAI-compatible provider families (kept import-light: the gunicorn master reads it before forking)."""

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

# How a family's /rerank endpoint speaks (deltallm_params.rerank_api overrides it per deployment):
# "cohere" is the Cohere/Jina shape vLLM and Infinity also serve, "voyage" Voyage's top_k/data shape,
# "tei" Hugging Face text-embeddings-inference's texts/[{index, score}] shape.
RERANK_APIS = ("cohere", "voyage", "tei")
RERANK_API = {"voyage": "voyage"}

# Request fields the gateway consumes itself (the mock provider's pins; `fallbacks` is taken off the
# body before routing): never sent to any upstream.
GATEWAY_ONLY = ("mock_response", "mock_tool_calls")
# Families that take OpenAI's chat `metadata` (stored completions); elsewhere it is gateway-side only.
METADATA_FAMILIES = frozenset({"openai", "azure"})
# Per-family rewriting of chat requests for upstreams that refuse OpenAI fields they do not know
# (each rule is listed in the README's provider table): field -> new name, or None to drop it.
CHAT_REWRITES = {
    # Mistral's API refuses unknown fields ("Extra inputs are not permitted"): it names the limit
    # max_tokens and the seed random_seed, and has no user, store, service_tier, stream_options,
    # logit_bias or reasoning_effort (Magistral models reason without being asked).
    "mistral": {"max_completion_tokens": "max_tokens", "seed": "random_seed", "user": None, "store": None,
                "service_tier": None, "stream_options": None, "logit_bias": None, "reasoning_effort": None},
    # Perplexity names the limit max_tokens and offers no stored completions or usage stream option.
    "perplexity": {"max_completion_tokens": "max_tokens", "store": None, "stream_options": None},
}
