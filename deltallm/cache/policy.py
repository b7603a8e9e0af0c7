"""Which requests the response cache may answer, under which key, and the client's controls over it."""
import hashlib

import orjson

from deltallm.errors import InvalidRequest

# not part of what is asked: who asks, how the answer is delivered, and the cache controls themselves
IGNORED = ("user", "metadata", "stream", "stream_options", "cache")
# endpoints whose answers are sampled: cached only at temperature 0 (absent is OpenAI's default, 1)
SAMPLED = {"/v1/chat/completions", "/v1/completions", "/v1/responses"}
BODY_CONTROLS = {"no-cache", "no-store", "ttl"}


class Decision:
    """What the cache does for one request: `key` (None: the request is not cacheable), `lookup`,
    `store`, and the entry's `ttl`."""

    __slots__ = ("key", "lookup", "store", "ttl")

    def __init__(self, key, lookup, store, ttl):
        self.key, self.lookup, self.store, self.ttl = key, lookup, store, ttl

    @property
    def label(self):
        """The x-deltallm-cache header before the lookup: `skip` when there is none."""
        return "miss" if self.lookup else "skip"


def decide(conf, endpoint, group, namespace, body, cache_control):
    """The Decision for validated `body` (its `cache` field is consumed here) sent to `endpoint` for
    model group `group` by a key in `namespace` (its id), with the request's Cache-Control header."""
    lookup, store, ttl = controls(body.pop("cache", None), cache_control, conf["ttl"])
    if endpoint in SAMPLED and not conf["cache_sampled"]:
        temperature = body.get("temperature")
        if (1 if temperature is None else temperature) > 0:
            return Decision(None, False, False, ttl)
    if not (lookup or store):
        return Decision(None, False, False, ttl)
    asked = {name: value for name, value in body.items() if name not in IGNORED}
    asked["model"] = group
    scope = "shared" if conf["namespace"] == "shared" else f"key:{namespace}"
    digest = hashlib.sha256(orjson.dumps([scope, endpoint, asked], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Decision(digest, lookup, store, ttl)


def controls(field, cache_control, default_ttl):
    """(look up?, store?, ttl) from LiteLLM's body field `cache` and the Cache-Control header."""
    lookup = store = True
    ttl = default_ttl
    if cache_control:
        directives = {part.strip().lower().partition("=")[0] for part in cache_control.split(",")}
        if "no-store" in directives:
            lookup = store = False
        elif "no-cache" in directives:
            lookup = False
    if field is None:
        return lookup, store, ttl
    if not isinstance(field, dict):
        raise InvalidRequest("Invalid value for 'cache': must be an object", param="cache")
    for name, value in field.items():
        if name not in BODY_CONTROLS:
            raise InvalidRequest(f"Unknown cache control '{name}' (known: no-cache, no-store, ttl)",
                                 param=f"cache.{name}")
        if name != "ttl" and not isinstance(value, bool):
            raise InvalidRequest(f"Invalid value for 'cache.{name}': must be a boolean", param=f"cache.{name}")
    ttl_given = field.get("ttl")
    if ttl_given is not None:
        if isinstance(ttl_given, bool) or not isinstance(ttl_given, (int, float)) or not 0 < ttl_given <= 31_536_000:
            raise InvalidRequest("Invalid value for 'cache.ttl': seconds, above 0 and at most a year",
                                 param="cache.ttl")
        ttl = ttl_given
    if field.get("no-store"):
        lookup = store = False
    elif field.get("no-cache"):
        lookup = False
    return lookup, store, ttl
