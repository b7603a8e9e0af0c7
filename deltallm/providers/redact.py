"""Upstream text made safe to relay or log: capped in size, with anything credential-like masked."""
import re

MAX_MESSAGE = 2048
MASK = "***"
# Runs only on error paths. Each pattern keeps its first group (the label) and masks the rest.
PATTERNS = [
    re.compile(r"()[^\s*]*\*{3,}[^\s\"',;]*"),  # a credential the upstream already half-masked
    # key=value / "key": "value" pairs, in JSON, headers, query strings and prose
    re.compile(r"""(?i)((?:api[_-]?key|x-api-key|x-goog-api-key|access[_-]?token|auth[_-]?token|"""
               r"""secret[_-]?(?:access[_-]?)?key|client[_-]?secret|password|passwd)["']?\s*[=:]\s*["']?)"""
               r"""[^\s"'&,;}<>]+"""),
    re.compile(r"(?i)([?&](?:key|token|sig|signature|code|api-key|access_token)=)[^&\s\"'#]+"),
    re.compile(r"(?i)(\b(?:bearer|basic|token)\s+)[\w\-.~+/=*]{6,}"),
    re.compile(r"(\b)(?:sk|pk|rk|ak)-[\w\-*.]{4,}"),  # OpenAI-style keys, also "sk-upst***7890"
    re.compile(r"(\b)AIza[\w\-]{20,}"),  # Google API keys
    re.compile(r"(\b)(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{12,}"),  # AWS access key ids
    re.compile(r"(\b)(?:xox[abpr]|gh[pousr]|glpat|hf)[_-][\w\-]{10,}"),  # Slack, GitHub, GitLab, HF tokens
    re.compile(r"(\b)eyJ[\w\-]{10,}\.[\w\-]{10,}\.[\w\-]*"),  # JWTs
    re.compile(r"(://[^/\s:@]*:)[^/\s@]+(?=@)"),  # passwords in URLs
    re.compile(r"(\b)[A-Fa-f0-9]{32,}\b"),  # long hex strings (Azure keys)
    re.compile(r"()(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),  # AWS secret keys and other 40-char secrets
]


def clean(text, secrets=()):
    """`text` at most MAX_MESSAGE characters long, with `secrets` and credential-like strings masked."""
    text = str(text)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + " ...(truncated)"
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text
