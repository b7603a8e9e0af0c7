"""Each provider's own context-length and content-policy refusals are recognised; other 400s are not."""
import pytest

from deltallm.providers.classify import classify


@pytest.mark.parametrize("status,message,code", [
    (400, "This model's maximum context length is 128000 tokens. However, your messages resulted in "
          "130000 tokens. Please reduce the length of the messages.", "context_length_exceeded"),   # OpenAI
    (400, "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
          "(4000 in the messages, 1000 in the completion).", None),                                  # vLLM
    (400, "prompt is too long: 210000 tokens > 200000 maximum", None),                              # Anthropic
    (400, "input length and `max_tokens` exceed context limit: 199000 + 8192 > 200000, decrease "
          "input length or `max_tokens` and try again", None),                                      # Anthropic
    (400, "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", None),  # Gemini
    (400, "Input is too long for requested model.", None),                                          # Bedrock
    (400, "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum "
          "context length", None),                                                                   # Mistral
    (422, "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4097. Given: 4000 "
          "`inputs` tokens and 200 `max_new_tokens`", None),                                         # TGI / Together
    (400, "whatever the words", "context_length_exceeded"),
])
def test_context_window_errors(status, message, code):
    assert classify(status, message, code) == "context_window"


@pytest.mark.parametrize("status,message,code", [
    (400, "The response was filtered due to the prompt triggering Azure OpenAI's content management "
          "policy. Please modify your prompt and retry.", "content_filter"),                        # Azure
    (400, "Your request was rejected as a result of our safety system.", "content_policy_violation"),  # OpenAI images
    (400, "Output blocked by content filtering policy", None),                                      # Anthropic
    (400, "The prompt was blocked for safety reasons", None),                                       # Gemini-style
])
def test_content_policy_errors(status, message, code):
    assert classify(status, message, code) == "content_policy"


@pytest.mark.parametrize("status,message,code", [
    (400, "Invalid value for 'temperature': must be <= 2", "invalid_value"),
    (400, "messages: at least one message is required", None),
    (429, "Too many tokens per minute, slow down", "rate_limit_exceeded"),   # a rate limit, not a context error
    (401, "content policy", None),
    (500, "maximum context length", None),
])
def test_other_errors_are_not_classified(status, message, code):
    assert classify(status, message, code) is None
