"""Embeddings on native providers (Gemini batchEmbedContents, Cohere v2 embed, Bedrock Titan and Cohere
InvokeModel): pinned upstream requests, the OpenAI list shape, usage, base64 made by the gateway."""
import base64
import json
import re
import struct

import pytest
from openai.types import CreateEmbeddingResponse

from tests import openapi
from tests.conftest import base_config

GEMINI = "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents"
COHERE = "https://api.cohere.com/v2/embed"
BEDROCK = "https://bedrock-runtime.us-east-1.amazonaws.com/model"
AWS = {"aws_region_name": "us-east-1", "aws_access_key_id": "AKID", "aws_secret_access_key": "SECRET"}


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path)
    cfg["model_list"] += [
        {"model_name": "gem", "deltallm_params": {"model": "gemini/text-embedding-004", "api_key": "g-key"},
         "model_info": {"mode": "embedding", "input_type": "RETRIEVAL_DOCUMENT"}},
        {"model_name": "co", "deltallm_params": {"model": "cohere/embed-english-v3.0", "api_key": "c-key"}},
        {"model_name": "titan", "deltallm_params": {"model": "bedrock/amazon.titan-embed-text-v2:0", **AWS}},
        {"model_name": "titan1", "deltallm_params": {"model": "bedrock/amazon.titan-embed-text-v1", **AWS}},
        {"model_name": "bco", "deltallm_params": {"model": "bedrock/cohere.embed-english-v3", **AWS}},
        {"model_name": "bclaude", "deltallm_params": {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                                                      **AWS}},
    ]
    return cfg


def embed(client, auth, **body):
    return client.post("/v1/embeddings", headers=auth, json=body)


def floats(b64):
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def valid(body):
    """OpenAI's schema types `embedding` as floats; a base64 one is a string (the SDK decodes it)."""
    if all(isinstance(d["embedding"], str) for d in body["data"]):
        body = dict(body, data=[dict(d, embedding=floats(d["embedding"])) for d in body["data"]])
    openapi.check("CreateEmbeddingResponse", body)
    CreateEmbeddingResponse.model_validate(body)


def test_gemini_batch_embed_contents(client, auth, upstream):
    upstream.post(GEMINI, json={"embeddings": [{"values": [0.5, -1.0]}, {"values": [0.25, 2.0]}]})
    resp = embed(client, auth, model="gem", input=["one", "two"], dimensions=2)
    assert resp.status_code == 200, resp.get_json()
    assert json.loads(upstream.calls[0].request.body) == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]},
         "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 2},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "two"}]},
         "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 2}]}
    assert upstream.calls[0].request.headers["x-goog-api-key"] == "g-key"
    body = resp.get_json()
    valid(body)
    assert [d["embedding"] for d in body["data"]] == [[0.5, -1.0], [0.25, 2.0]]


def test_gemini_task_type_from_the_request_and_base64(client, auth, upstream):
    upstream.post(GEMINI, json={"embeddings": [{"values": [0.5, -1.0]}]})
    resp = embed(client, auth, model="gem", input="q", task_type="RETRIEVAL_QUERY", encoding_format="base64")
    assert json.loads(upstream.calls[0].request.body)["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    body = resp.get_json()
    valid(body)
    assert floats(body["data"][0]["embedding"]) == [0.5, -1.0]


def test_gemini_refuses_unknown_task_types(client, auth, upstream):
    resp = embed(client, auth, model="gem", input="q", task_type="nope")
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "task_type"


def test_cohere_v2_embed(client, auth, upstream):
    upstream.post(COHERE, json={"id": "e1", "response_type": "embeddings_by_type", "texts": ["a", "b"],
                                "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
                                "meta": {"billed_units": {"input_tokens": 6}}})
    resp = embed(client, auth, model="co", input=["a", "b"], input_type="search_query", dimensions=256)
    assert json.loads(upstream.calls[0].request.body) == {
        "model": "embed-english-v3.0", "texts": ["a", "b"], "input_type": "search_query",
        "embedding_types": ["float"], "output_dimension": 256}
    assert upstream.calls[0].request.headers["Authorization"] == "Bearer c-key"
    body = resp.get_json()
    valid(body)
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert body["data"][1]["embedding"] == [0.3, 0.4]


def test_cohere_defaults_to_search_document_and_splits_long_inputs(client, auth, upstream):
    def answer(request):
        texts = json.loads(request.body)["texts"]
        return 200, {}, json.dumps({"embeddings": {"float": [[float(len(t))] for t in texts]},
                                    "meta": {"billed_units": {"input_tokens": len(texts)}}})
    upstream.add_callback("POST", COHERE, callback=answer)
    inputs = ["x" * (i % 7 + 1) for i in range(100)]
    body = embed(client, auth, model="co", input=inputs).get_json()
    sent = [json.loads(c.request.body) for c in upstream.calls]
    assert [len(s["texts"]) for s in sent] == [96, 4] and sent[0]["input_type"] == "search_document"
    assert [d["embedding"][0] for d in body["data"]] == [float(len(t)) for t in inputs]
    assert body["usage"]["prompt_tokens"] == 100


def test_bedrock_titan_one_call_per_input(client, auth, upstream):
    def answer(request):
        text = json.loads(request.body)["inputText"]
        return 200, {}, json.dumps({"embedding": [float(len(text)), 1.0], "inputTextTokenCount": len(text)})
    upstream.add_callback("POST", BEDROCK + "/amazon.titan-embed-text-v2%3A0/invoke", callback=answer)
    resp = embed(client, auth, model="titan", input=["a", "bbb", "cc"], dimensions=256, encoding_format="base64")
    assert resp.status_code == 200, resp.get_json()
    bodies = sorted((json.loads(c.request.body) for c in upstream.calls), key=lambda b: b["inputText"])
    assert bodies == [{"inputText": t, "dimensions": 256} for t in ("a", "bbb", "cc")]
    assert all(re.match(r"^AWS4-HMAC-SHA256 Credential=AKID/", c.request.headers["Authorization"])
               for c in upstream.calls)
    body = resp.get_json()
    valid(body)
    assert [floats(d["embedding"])[0] for d in body["data"]] == [1.0, 3.0, 2.0]  # input order kept
    assert body["usage"]["prompt_tokens"] == 6


def test_titan_v1_takes_no_dimensions(client, auth, upstream):
    resp = embed(client, auth, model="titan1", input="a", dimensions=256)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "dimensions"


def test_bedrock_cohere_embed(client, auth, upstream):
    upstream.post(BEDROCK + "/cohere.embed-english-v3/invoke", headers={"X-Amzn-Bedrock-Input-Token-Count": "4"},
                  json={"id": "x", "response_type": "embeddings_floats", "texts": ["a", "b"],
                        "embeddings": [[0.1], [0.2]]})
    body = embed(client, auth, model="bco", input=["a", "b"]).get_json()
    assert json.loads(upstream.calls[0].request.body) == {"texts": ["a", "b"], "input_type": "search_document"}
    valid(body)
    assert body["usage"]["prompt_tokens"] == 4 and body["data"][1]["embedding"] == [0.2]


@pytest.mark.parametrize("model", ["gem", "co", "titan", "bco"])
def test_token_arrays_are_400_on_native_apis(client, auth, upstream, model):
    resp = embed(client, auth, model=model, input=[[1, 2, 3]])
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "input"
    assert len(upstream.calls) == 0


@pytest.mark.parametrize("model", ["gem", "co", "titan", "bco"])
def test_unknown_fields_are_400_on_native_apis(client, auth, upstream, model):
    resp = embed(client, auth, model=model, input="a", frobnicate=1)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "frobnicate"


def test_bedrock_chat_models_do_not_embed(client, auth, upstream):
    resp = embed(client, auth, model="bclaude", input="a")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "unsupported_model"


@pytest.mark.parametrize("model,url,answer", [
    ("gem", GEMINI, {"embeddings": [{"values": "x"}]}),
    ("co", COHERE, {"embeddings": {"float": [[0.1], [0.2]]}}),
    ("bco", BEDROCK + "/cohere.embed-english-v3/invoke", {"embeddings": {"int8": [[1]]}}),
])
def test_malformed_answers_are_502(client, auth, upstream, model, url, answer):
    upstream.post(url, json=answer)
    assert embed(client, auth, model=model, input="a").status_code == 502
