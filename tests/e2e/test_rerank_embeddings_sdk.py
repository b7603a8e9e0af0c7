"""Rerank (requests and the cohere SDK), native embeddings (openai SDK, float and base64), translations,
mode mismatches and a 20 MB transcription upload's memory, through gunicorn to fakes of each provider."""
import os

import cohere
import openai
import pytest
import requests

from tests.e2e.conftest import MASTER, gateway_config, running_gateway
from tests.e2e.test_files_sdk import memory_kb, workers

DOCS = ["the capital of France is Paris", "Berlin is a city", "France has wine"]


def media_config(upstream, database):
    aws = "aws_region_name: us-east-1, aws_access_key_id: AKIDTEST, aws_secret_access_key: SECRET"
    return gateway_config(upstream, database).replace("general_settings:", f"""
  - model_name: co-rerank
    deltallm_params: {{model: cohere/rerank-v3.5, api_base: {upstream}/cohere/v2, api_key: upstream-secret}}
    model_info: {{mode: rerank}}
  - model_name: co-embed
    deltallm_params: {{model: cohere/embed-english-v3.0, api_base: {upstream}/cohere/v2, api_key: upstream-secret}}
    model_info: {{mode: embedding}}
  - model_name: jina-rerank
    deltallm_params: {{model: jina/jina-reranker-v2-base-multilingual, api_base: {upstream}/jina/v1,
                       api_key: upstream-secret}}
  - model_name: voyage-rerank
    deltallm_params: {{model: voyage/rerank-2, api_base: {upstream}/voyage/v1, api_key: upstream-secret}}
  - model_name: tei-rerank
    deltallm_params: {{model: openai/bge-reranker, api_base: {upstream}/tei, rerank_api: tei}}
    model_info: {{mode: rerank}}
  - model_name: gemini-embed
    deltallm_params: {{model: gemini/text-embedding-004, api_base: {upstream}/v1beta, api_key: upstream-secret}}
    model_info: {{mode: embedding}}
  - model_name: titan
    deltallm_params: {{model: bedrock/amazon.titan-embed-text-v2:0, api_base: {upstream}, {aws}}}
  - model_name: bedrock-cohere
    deltallm_params: {{model: bedrock/cohere.embed-english-v3, api_base: {upstream}, {aws}}}
general_settings:
  max_transcription_mb: 25""", 1)


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("media")
    with running_gateway(media_config(upstream_url, tmp / "media.db"), tmp) as url:
        yield url


@pytest.fixture
def sdk(gateway):
    return openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER, max_retries=0, timeout=60)


def rerank(gateway, **body):
    return requests.post(gateway + "/v1/rerank", headers={"Authorization": f"Bearer {MASTER}"},
                         json={"query": "capital of France", "documents": DOCS, **body}, timeout=30)


@pytest.mark.parametrize("model", ["co-rerank", "jina-rerank", "voyage-rerank", "tei-rerank"])
def test_rerank_with_requests(gateway, model):
    resp = rerank(gateway, model=model, top_n=2, return_documents=True)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [r["index"] for r in body["results"]] == [0, 2]
    assert body["results"][0]["document"] == {"text": DOCS[0]}
    assert body["results"][0]["relevance_score"] >= body["results"][1]["relevance_score"]
    assert resp.headers["x-deltallm-deployment"]
    if model == "co-rerank":
        assert body["meta"]["billed_units"]["search_units"] == 1
    elif model != "tei-rerank":
        assert body["usage"]["total_tokens"] > 0


def test_rerank_with_the_cohere_sdk(gateway):
    v1 = cohere.Client(api_key=MASTER, base_url=gateway, timeout=30)
    answer = v1.rerank(model="jina-rerank", query="capital of France", documents=DOCS, top_n=2, return_documents=True)
    assert [r.index for r in answer.results] == [0, 2] and answer.results[0].document.text == DOCS[0]
    v2 = cohere.ClientV2(api_key=MASTER, base_url=gateway, timeout=30)
    answer = v2.rerank(model="co-rerank", query="capital of France", documents=DOCS, top_n=1)
    assert answer.results[0].index == 0 and answer.meta.billed_units.search_units == 1
    with pytest.raises(cohere.errors.BadRequestError):
        v2.rerank(model="co-rerank", query="q", documents=[])


@pytest.mark.parametrize("model", ["co-embed", "gemini-embed", "titan", "bedrock-cohere"])
def test_native_embeddings_with_the_openai_sdk(sdk, model):
    floats = sdk.embeddings.create(model=model, input=["one two", "three"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [[7.0, 2.0, 0.5], [5.0, 1.0, 0.5]]
    packed = sdk.embeddings.create(model=model, input=["one two", "three"])  # the SDK asks for base64
    assert [d.embedding for d in packed.data] == [[7.0, 2.0, 0.5], [5.0, 1.0, 0.5]]
    if model != "gemini-embed":  # Gemini reports no token counts
        assert floats.usage.prompt_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "azure"])
def test_translations_with_the_openai_sdk(sdk, model):
    text = sdk.audio.translations.create(model=model, file=("speech.mp3", b"ID3" + b"x" * 5000, "audio/mpeg"))
    assert text.text == f"translated 5003 bytes of speech.mp3 as {'gpt-4o-mini' if model != 'azure' else 'gpt4o-deploy'}"
    plain = sdk.audio.translations.with_raw_response.create(model=model, file=("a.mp3", b"x" * 10),
                                                            response_format="srt")
    assert plain.headers["content-type"] == "text/plain; charset=utf-8"


def test_mode_mismatches_are_400_before_the_upstream(sdk, gateway):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="co-rerank", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "unsupported_model" and "mode: rerank" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model="tei-rerank", input="x")
    assert rerank(gateway, model="gemini-embed").status_code == 400


def test_a_20_mb_transcription_upload_streams_through(sdk, gateway, tmp_path):
    for _ in range(4):  # warm both workers up
        sdk.audio.transcriptions.create(model="gpt-4o-mini", file=("warm.wav", b"RIFF" * 1000, "audio/wav"))
    pids = workers(gateway.proc.pid)
    before = {pid: memory_kb(pid, "VmHWM") for pid in pids}
    big = tmp_path / "big.wav"
    with big.open("wb") as fh:
        for _ in range(20):
            fh.write(os.urandom(1024 * 1024))
    with big.open("rb") as fh:
        text = sdk.audio.transcriptions.create(model="gpt-4o-mini", file=("big.wav", fh, "audio/wav"))
    assert text.text == f"heard {20 * 1024 * 1024} bytes of big.wav as gpt-4o-mini"
    growth = max(memory_kb(pid, "VmHWM") - before[pid] for pid in pids)
    assert growth < 30 * 1024, f"a worker's peak RSS grew by {growth} kB for a 20 MB upload"
