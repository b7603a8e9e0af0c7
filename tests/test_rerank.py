"""POST /v1/rerank: pinned upstream requests per provider (Cohere v2, Jina, Voyage, TEI, vLLM) and the
gateway's response shape, limits and usage."""
import json

import pytest

from deltallm.governance import prices
from tests.conftest import UPSTREAM, base_config

COHERE = "https://api.cohere.com/v2"
JINA = "https://api.jina.ai/v1"
VOYAGE = "https://api.voyageai.com/v1"
TEI = "http://tei.test"
DOCS = ["Paris is in France", "Berlin is in Germany", "Rome is in Italy"]


def entry(name, model, **params):
    return {"model_name": name, "deltallm_params": {"model": model, "api_key": "up-key", **params},
            "model_info": {"mode": "rerank"}}


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path, max_rerank_documents=5)
    cfg["model_list"] += [
        entry("co", "cohere/rerank-v3.5"), entry("jina", "jina/jina-reranker-v2-base-multilingual"),
        entry("voy", "voyage/rerank-2"), entry("tei", "openai/bge-reranker", api_base=TEI, rerank_api="tei"),
        entry("vllm", "vllm/BAAI/bge-reranker-v2-m3", api_base=UPSTREAM),
    ]
    cfg["model_list"][-5]["model_info"]["input_cost_per_query"] = 0.002
    return cfg


def sent(upstream):
    return json.loads(upstream.calls[-1].request.body)


def rerank(client, auth, **body):
    return client.post("/v1/rerank", headers=auth, json={"query": "capital of France", "documents": DOCS, **body})


def test_cohere_v2_request_and_answer(client, auth, upstream):
    upstream.post(COHERE + "/rerank", json={
        "id": "abc-123", "results": [{"index": 2, "relevance_score": 0.1}, {"index": 0, "relevance_score": 0.9}],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}})
    resp = rerank(client, auth, model="co", top_n=2, return_documents=True, max_tokens_per_doc=512)
    assert resp.status_code == 200, resp.get_json()
    assert sent(upstream) == {"model": "rerank-v3.5", "query": "capital of France", "documents": DOCS,
                              "top_n": 2, "max_tokens_per_doc": 512}
    assert upstream.calls[-1].request.headers["Authorization"] == "Bearer up-key"
    body = resp.get_json()
    assert body["id"] == "abc-123"
    assert body["results"] == [{"index": 0, "relevance_score": 0.9, "document": {"text": DOCS[0]}},
                               {"index": 2, "relevance_score": 0.1, "document": {"text": DOCS[2]}}]
    assert body["meta"]["billed_units"] == {"search_units": 1}


def test_cohere_search_units_are_billed(client, auth, upstream, app):
    upstream.post(COHERE + "/rerank", json={"id": "x", "results": [{"index": 0, "relevance_score": 0.5}],
                                            "meta": {"billed_units": {"search_units": 3}}})
    price = app.extensions["deltallm"].registry.group("co")[0].price
    assert price.known and price.per_search_unit == 0.002
    assert prices.cost(price, None, search_units=3) == pytest.approx(0.006)
    assert rerank(client, auth, model="co").status_code == 200


def test_cohere_rank_fields_become_text_lines(client, auth, upstream):
    upstream.post(COHERE + "/rerank", json={"results": [{"index": 0, "relevance_score": 0.5}]})
    docs = [{"title": "Paris", "body": "capital of France", "year": 2024}]
    resp = client.post("/v1/rerank", headers=auth, json={"model": "co", "query": "q", "documents": docs,
                                                         "rank_fields": ["title", "year"], "return_documents": True})
    assert resp.status_code == 200
    assert sent(upstream)["documents"] == ["title: Paris\nyear: 2024"]
    assert resp.get_json()["results"][0]["document"] == docs[0]


def test_cohere_refuses_fields_its_api_lacks(client, auth, upstream):
    resp = rerank(client, auth, model="co", max_chunks_per_doc=3)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "max_chunks_per_doc"
    assert len(upstream.calls) == 0


def test_jina_request_and_usage(client, auth, upstream):
    upstream.post(JINA + "/rerank", json={
        "model": "jina-reranker-v2-base-multilingual", "usage": {"total_tokens": 42},
        "results": [{"index": 1, "document": {"text": DOCS[1]}, "relevance_score": 0.2},
                    {"index": 0, "document": {"text": DOCS[0]}, "relevance_score": 0.8}]})
    resp = rerank(client, auth, model="jina", top_n=1, return_documents=False)
    assert sent(upstream) == {"model": "jina-reranker-v2-base-multilingual", "query": "capital of France",
                              "documents": DOCS, "top_n": 1, "return_documents": False}
    body = resp.get_json()
    assert body["results"] == [{"index": 0, "relevance_score": 0.8}]  # top_n applied, no document
    assert body["usage"] == {"prompt_tokens": 42, "total_tokens": 42}
    assert body["model"] == "jina-reranker-v2-base-multilingual"


def test_voyage_top_k_and_data_are_translated(client, auth, upstream):
    upstream.post(VOYAGE + "/rerank", json={
        "object": "list", "model": "rerank-2", "usage": {"total_tokens": 30},
        "data": [{"relevance_score": 0.7, "index": 0}, {"relevance_score": 0.3, "index": 2}]})
    resp = rerank(client, auth, model="voy", top_n=2, return_documents=True, truncation=False)
    assert sent(upstream) == {"model": "rerank-2", "query": "capital of France", "documents": DOCS, "top_k": 2,
                              "truncation": False}
    body = resp.get_json()
    assert [r["index"] for r in body["results"]] == [0, 2]
    assert body["results"][1]["document"] == {"text": DOCS[2]} and body["usage"]["total_tokens"] == 30


def test_voyage_refuses_max_tokens_per_doc(client, auth, upstream):
    resp = rerank(client, auth, model="voy", max_tokens_per_doc=10)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "max_tokens_per_doc"


def test_tei_texts_and_scores_are_translated(client, auth, upstream):
    upstream.post(TEI + "/rerank", json=[{"index": 1, "score": 0.01}, {"index": 0, "score": 0.99},
                                         {"index": 2, "score": 0.5}])
    resp = rerank(client, auth, model="tei", top_n=2, raw_scores=False)
    assert sent(upstream) == {"query": "capital of France", "texts": DOCS, "raw_scores": False}
    body = resp.get_json()
    assert body["results"] == [{"index": 0, "relevance_score": 0.99}, {"index": 2, "relevance_score": 0.5}]
    assert "usage" not in body and body["model"] == "bge-reranker"


def test_vllm_uses_the_cohere_shape_under_its_base(client, auth, upstream):
    upstream.post(UPSTREAM + "/rerank", json={"id": "rerank-1", "model": "BAAI/bge-reranker-v2-m3",
                                              "usage": {"total_tokens": 9},
                                              "results": [{"index": 0, "relevance_score": 0.6}]})
    docs = [{"text": "Paris"}, "Rome"]
    resp = client.post("/v1/rerank", headers=auth, json={"model": "vllm", "query": "q", "documents": docs})
    assert resp.status_code == 200
    assert sent(upstream) == {"model": "BAAI/bge-reranker-v2-m3", "query": "q", "documents": ["Paris", "Rome"]}


@pytest.mark.parametrize("documents,param", [([], "documents"), ("text", "documents"), ([1], "documents"),
                                             ([{"title": "x"}], "documents[0]"), (["a"] * 6, "documents")])
def test_bad_documents_are_400(client, auth, upstream, documents, param):
    resp = client.post("/v1/rerank", headers=auth, json={"model": "co", "query": "q", "documents": documents})
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["param"] == param
    assert len(upstream.calls) == 0


@pytest.mark.parametrize("field,value", [("top_n", 0), ("top_n", "2"), ("return_documents", "yes"),
                                         ("query", ""), ("rank_fields", []), ("max_tokens_per_doc", 0)])
def test_bad_fields_are_400(client, auth, field, value):
    resp = rerank(client, auth, model="co", **{field: value})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == field


@pytest.mark.parametrize("answer", [{"results": [{"index": 7, "relevance_score": 0.5}]}, {"results": "x"},
                                    {"nothing": 1}, [1, 2]])
def test_malformed_upstream_answers_are_502(client, auth, upstream, answer):
    upstream.post(COHERE + "/rerank", json=answer)
    resp = rerank(client, auth, model="co")
    assert resp.status_code == 502 and resp.get_json()["error"]["type"] == "upstream_error"


def test_cohere_v2_path_is_served_too(client, auth, upstream):
    upstream.post(COHERE + "/rerank", json={"results": [{"index": 0, "relevance_score": 0.5}]})
    resp = client.post("/v2/rerank", headers=auth, json={"model": "co", "query": "q", "documents": ["a"]})
    assert resp.status_code == 200 and resp.get_json()["results"][0]["index"] == 0

