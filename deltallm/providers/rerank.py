"""Rerank wire formats: each upstream's request built from the gateway's (Cohere/Jina-shaped) body, and
its answer turned into the gateway's response: results sorted by score, `document` as asked, usage."""
import uuid

from deltallm.errors import InvalidRequest
from deltallm.providers.base import not_a_completion

# fields of the gateway's request that every shape below consumes or translates itself
OWN = {"model", "query", "documents", "top_n", "return_documents", "max_tokens_per_doc", "rank_fields"}


def not_offered(provider, field):
    return InvalidRequest(f"'{field}' is not offered by the {provider} rerank API", param=field)


def passed_on(body, provider, refused=()):
    """The request's other fields (unknown to the gateway: the upstream's own options), minus those the
    upstream is known to lack (a 400: never silently dropped)."""
    for field in refused:
        if body.get(field) is not None:
            raise not_offered(provider, field)
    return {k: v for k, v in body.items() if k not in OWN}


def cohere_request(body, model, texts):
    """The Cohere/Jina shape, as vLLM, Infinity and Jina serve it (documents as strings)."""
    payload = dict(passed_on(body, "cohere"), model=model, query=body["query"], documents=texts)
    for field in ("top_n", "return_documents", "max_tokens_per_doc"):
        if body.get(field) is not None:
            payload[field] = body[field]
    return payload


def voyage_request(body, model, texts):
    payload = dict(passed_on(body, "voyage", ("max_tokens_per_doc",)), model=model, query=body["query"],
                   documents=texts)
    if body.get("top_n") is not None:
        payload["top_k"] = body["top_n"]
    return payload


def tei_request(body, model, texts):
    """text-embeddings-inference serves one model: no model field; top_n is applied by the gateway."""
    del model
    return dict(passed_on(body, "tei", ("max_tokens_per_doc",)), query=body["query"], texts=texts)


def results_of(data, shape):
    """[(index, score, extra fields)] from an upstream answer of `shape`."""
    if shape == "tei":
        items, score = data, "score"
    elif shape == "voyage":
        items, score = data["data"], "relevance_score"
    else:
        items, score = data["results"], "relevance_score"
    out = []
    for item in items:
        index, value = item["index"], item[score]
        if isinstance(index, bool) or not isinstance(index, int) or isinstance(value, bool) \
                or not isinstance(value, (int, float)):
            raise TypeError("index or score of the wrong type")
        extra = {"relevant_spans": item["relevant_spans"]} if item.get("relevant_spans") else {}
        out.append((index, float(value), extra))
    return out


def usage_of(data, shape):
    """(usage dict or None, Cohere search units or 0) as the upstream reported them."""
    if shape == "tei" or not isinstance(data, dict):
        return None, 0
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    billed = meta.get("billed_units") if isinstance(meta.get("billed_units"), dict) else {}
    units = billed.get("search_units")
    units = int(units) if isinstance(units, (int, float)) and not isinstance(units, bool) else 0
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("total_tokens", usage.get("prompt_tokens"))
    if tokens is None:
        tokens = (meta.get("tokens") or {}).get("input_tokens") if isinstance(meta.get("tokens"), dict) else None
    if isinstance(tokens, (int, float)) and not isinstance(tokens, bool):
        return {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}, units
    return None, units


def response(provider, data, shape, body, texts, model):
    """The gateway's rerank response from an upstream answer: sorted by score, cut to top_n, with each
    result's document (as sent: an object stays an object, a string becomes {text}) when asked for."""
    try:
        results = results_of(data, shape)
        usage, units = usage_of(data, shape)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError):
        raise not_a_completion(provider, "a rerank response") from None
    if any(not 0 <= index < len(texts) for index, _, _ in results):
        raise not_a_completion(provider, "a rerank response (a result index is out of range)")
    results.sort(key=lambda r: -r[1])
    if body.get("top_n") is not None:
        results = results[:body["top_n"]]
    shaped = []
    for index, score, extra in results:
        item = {"index": index, "relevance_score": score, **extra}
        if body.get("return_documents"):
            doc = body["documents"][index]
            item["document"] = doc if isinstance(doc, dict) else {"text": doc}
        shaped.append(item)
    upstream_id = data.get("id") if isinstance(data, dict) else None
    out = {"id": upstream_id if isinstance(upstream_id, str) and upstream_id else f"rerank-{uuid.uuid4().hex}",
           "model": data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), str) else model,
           "results": shaped, "meta": {"billed_units": {}}}
    if units:
        out["meta"]["billed_units"]["search_units"] = units
    if usage is not None:
        out["meta"]["billed_units"]["input_tokens"] = usage["prompt_tokens"]
        out["usage"] = usage
    return out, units


SHAPES = {"cohere": cohere_request, "voyage": voyage_request, "tei": tei_request}
