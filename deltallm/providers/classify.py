"""Recognise the two upstream refusals that have fallbacks of their own: context length and content policy.

Each provider words them differently (and OpenAI-compatible servers copy OpenAI's wording loosely),
so the upstream's error code is checked first and its message second.
"""
import re

CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length", "model_context_window_exceeded"}
POLICY_CODES = {"content_filter", "content_policy_violation", "responsibleaipolicyviolation",
                "content_policy", "safety"}

CONTEXT_WORDS = re.compile("|".join([
    r"maximum context length",                        # OpenAI, Azure, vLLM, DeepSeek, Groq ...
    r"context[ _](?:length|window)[^.]{0,40}(?:exceed|too long|full)",
    r"exceed[^.]{0,40}context[ _](?:length|limit|window)",   # Anthropic: "... exceed context limit"
    r"prompt is too long",                            # Anthropic
    r"input token count[^.]{0,80}exceeds",            # Gemini
    r"input is too long",                             # Bedrock
    r"too many (?:input )?tokens",                    # Bedrock, others
    r"too large for model with \d+ maximum context",  # Mistral
    r"reduce the length of the (?:messages|prompt)",  # OpenAI (older), Groq
    r"max_new_tokens.? must be <=",                   # TGI / Together
]), re.IGNORECASE)

POLICY_WORDS = re.compile("|".join([
    r"content management policy",                     # Azure
    r"content[ _]policy",                             # OpenAI, generic
    r"content[ _]filter(?:ing)?",                     # Azure, Anthropic
    r"rejected as a result of our safety system",     # OpenAI images
    r"prompt was blocked",                            # Gemini
    r"responsible ?ai",                               # Azure
    r"guardrail[^.]{0,40}(?:blocked|intervened)",     # Bedrock
]), re.IGNORECASE)


def classify(status, message, code=None):
    """'context_window', 'content_policy' or None for an upstream client error (4xx other than
    401/403/404/408/429)."""
    if not 400 <= status < 500 or status in (401, 403, 404, 408, 429):
        return None
    code = code.lower() if isinstance(code, str) else ""
    if code in CONTEXT_CODES:
        return "context_window"
    if code in POLICY_CODES:
        return "content_policy"
    text = message if isinstance(message, str) else ""
    if CONTEXT_WORDS.search(text):
        return "context_window"
    if POLICY_WORDS.search(text):
        return "content_policy"
    return None
