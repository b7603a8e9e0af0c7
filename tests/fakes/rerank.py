"""Fake rerank and embedding APIs, written from each provider's public reference: Cohere v2 (/v2/rerank,
/v2/embed), Jina (/v1/rerank), Voyage (/v1/rerank: top_k in, data out), TEI (/rerank: texts in, a list
of {index, score} out), Gemini batchEmbedContents and Bedrock InvokeModel for Titan and Cohere embed.

Scores are the share of query words found in a document; vectors are [length, words, 0.5].
"""
from tests.fakes.common import json_reply


def score(query, text):
    words = set(query.lower().split())
    return round(len(words & set(text.lower().split())) / max(len(words), 1), 4)


def vector(text):
    return [float(len(text)), float(len(text.split())), 0.5]


def ranked(body, texts):
    order = sorted(range(len(texts)), key=lambda i: -score(body["query"], texts[i]))
    return [(i, score(body["query"], texts[i])) for i in order]


def bearer(req):
    if req.headers.get("authorization") != "Bearer upstream-secret":
        return json_reply(401, {"message": "invalid api token"})
    return None


def cohere_rerank(req):
    body = req.json()
    results = [{"index": i, "relevance_score": s} for i, s in ranked(body, body["documents"])]
    return bearer(req) or json_reply(200, {"id": "cohere-rr-1", "results": results[:body.get("top_n") or None],
                                           "meta": {"api_version": {"version": "2"},
                                                    "billed_units": {"search_units": 1}}})


def cohere_embed(req):
    body = req.json()
    tokens = sum(len(t.split()) for t in body["texts"])
    return bearer(req) or json_reply(200, {"id": "e-1", "response_type": "embeddings_by_type", "texts": body["texts"],
                                           "embeddings": {"float": [vector(t) for t in body["texts"]]},
                                           "meta": {"billed_units": {"input_tokens": tokens}}})


def jina_rerank(req):
    body = req.json()
    results = [{"index": i, "relevance_score": s, "document": {"text": body["documents"][i]}}
               for i, s in ranked(body, body["documents"])][:body.get("top_n") or None]
    return bearer(req) or json_reply(200, {"model": body["model"], "usage": {"total_tokens": 11},
                                           "results": results})


def voyage_rerank(req):
    body = req.json()
    data = [{"relevance_score": s, "index": i} for i, s in ranked(body, body["documents"])][:body.get("top_k") or None]
    return bearer(req) or json_reply(200, {"object": "list", "data": data, "model": body["model"],
                                           "usage": {"total_tokens": 13}})


def tei_rerank(req):
    body = req.json()
    return json_reply(200, [{"index": i, "score": s} for i, s in ranked(body, body["texts"])])


def gemini_embed(req):
    if req.headers.get("x-goog-api-key") != "upstream-secret":
        return json_reply(403, {"error": {"code": 403, "message": "bad key", "status": "PERMISSION_DENIED"}})
    texts = [r["content"]["parts"][0]["text"] for r in req.json()["requests"]]
    return json_reply(200, {"embeddings": [{"values": vector(t)} for t in texts]})


def bedrock_invoke(req):
    body = req.json()
    if "inputText" in body:
        text = body["inputText"]
        return json_reply(200, {"embedding": vector(text), "inputTextTokenCount": len(text.split())})
    return json_reply(200, {"id": "b-1", "response_type": "embeddings_floats", "texts": body["texts"],
                            "embeddings": [vector(t) for t in body["texts"]]},
                      headers=[("X-Amzn-Bedrock-Input-Token-Count", str(len(body["texts"])))])


ROUTES = [
    ("POST", r"/cohere/v2/rerank", cohere_rerank),
    ("POST", r"/cohere/v2/embed", cohere_embed),
    ("POST", r"/jina/v1/rerank", jina_rerank),
    ("POST", r"/voyage/v1/rerank", voyage_rerank),
    ("POST", r"/tei/rerank", tei_rerank),
    ("POST", r"/v1beta/models/(?P<model>[^/:]+):batchEmbedContents", gemini_embed),
    ("POST", r"/model/(?P<model>[^/]+)/invoke", bedrock_invoke),
]
