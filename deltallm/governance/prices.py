"""Per-deployment prices from the bundled table (data/prices.json) overridden by `model_info`, and cost."""
import functools
import json
import logging
import pathlib
from typing import NamedTuple, Optional

logger = logging.getLogger(__name__)

TABLE_PATH = pathlib.Path(__file__).parent / "data" / "prices.json"
# model_info spellings accepted for each price (LiteLLM's names first)
FIELDS = {
    "input": ("input_cost_per_token",),
    "output": ("output_cost_per_token",),
    "cached_input": ("cache_read_input_token_cost", "cached_input_cost_per_token",
                     "input_cost_per_token_cache_hit"),
    "per_image": ("output_cost_per_image", "cost_per_image"),
    "per_character": ("input_cost_per_character",),
    "per_second": ("input_cost_per_second", "input_cost_per_audio_second"),
    # rerank: LiteLLM's name for a price per search unit (Cohere bills one per query of <=100 documents)
    "per_search_unit": ("input_cost_per_query",),
    "per_request": ("input_cost_per_request",),
}
# Bedrock cross-region inference profiles carry a region prefix in front of the model id
REGION_PREFIXES = ("us.", "eu.", "apac.", "global.")
_warned = set()


class Price(NamedTuple):
    """USD prices of one deployment; `known` is False when neither the table nor model_info had one."""
    name: str
    known: bool = False
    input: float = 0.0
    output: float = 0.0
    cached_input: Optional[float] = None
    per_image: float = 0.0
    per_character: float = 0.0
    per_second: float = 0.0
    per_search_unit: float = 0.0
    per_request: float = 0.0


@functools.lru_cache(maxsize=4)
def load_table(path=TABLE_PATH):
    """The bundled table, lower-cased names to price dicts; read once per process."""
    with open(path, "rb") as handle:
        return {name.lower(): entry for name, entry in json.load(handle)["models"].items()}


def _candidates(model, model_info):
    names = []
    if model_info.get("base_model"):
        names.append(str(model_info["base_model"]))
    names.append(model)
    for name in list(names):
        if "/" in name:
            names.append(name.split("/", 1)[1])
    for name in list(names):
        for prefix in REGION_PREFIXES:
            if name.startswith(prefix):
                names.append(name[len(prefix):])
    return [name.lower() for name in names]


def _pick(source, spellings):
    for spelling in spellings:
        if source.get(spelling) is not None:
            return float(source[spelling])
    return None


def price_for(model, model_info=None, table=None):
    """Resolve a deployment's Price once, when the deployment is built: the table entry for its provider
    model (or model_info.base_model), each field overridden by model_info. O(1) per request after that."""
    model_info = model_info or {}
    table = load_table() if table is None else table
    entry = next((table[name] for name in _candidates(model, model_info) if name in table), None)
    values, known = {}, entry is not None
    for attr, spellings in FIELDS.items():
        override = _pick(model_info, spellings)
        if override is not None:
            values[attr], known = override, True
        elif entry is not None and _pick(entry, spellings) is not None:
            values[attr] = _pick(entry, spellings)
    return Price(name=model, known=known, **values)


def _count(details, key):
    return int((details or {}).get(key) or 0) if isinstance(details, dict) else 0


def cost(price, usage=None, *, images=0, characters=0, seconds=0.0, search_units=0, requests=1):
    """USD cost of one request from OpenAI-shaped usage (chat/completions/embeddings or responses'
    input/output_tokens); 0 with one warning per model when the price is unknown."""
    if not price.known:
        if price.name not in _warned:
            _warned.add(price.name)
            logger.warning("no price known for model %s: its requests are recorded with cost 0 "
                           "(set input_cost_per_token/output_cost_per_token in its model_info)", price.name)
        return 0.0
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
    completion = int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
    cached = _count(usage.get("prompt_tokens_details") or usage.get("input_tokens_details"), "cached_tokens")
    cached = min(cached, prompt)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = ((prompt - cached) * price.input + cached * cached_price + completion * price.output
             + images * price.per_image + characters * price.per_character + seconds * price.per_second
             + search_units * price.per_search_unit + requests * price.per_request)
    return round(total, 10)


def estimate(price, prompt_tokens, max_output_tokens=0):
    """The cost reserved against a budget before the call (unknown prices reserve nothing)."""
    if not price.known:
        return 0.0
    return prompt_tokens * price.input + (max_output_tokens or 0) * price.output


def highest(group):
    """The dearest of a model group's Prices (per field): what a budget reserves before the router
    has picked the deployment. Computed once per group when the registry changes."""
    group = [price for price in group if price.known]
    if not group:
        return None
    return Price(name=group[0].name, known=True, input=max(p.input for p in group),
                 output=max(p.output for p in group))
