"""Embeddings, image generation and audio through OpenAI-compatible and Azure deployments."""
import io
import json

import pytest
from openai.types import CreateEmbeddingResponse, ImagesResponse

from deltallm import create_app, models
from tests import openapi
from tests.conftest import UPSTREAM, base_config
from tests.test_audio_uploads import capture

AZURE = "https://contoso.openai.azure.com/openai/deployments/emb-dep"


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path)
    cfg["model_list"] += [
        {"model_name": "azure-emb", "deltallm_params": {"model": "azure/emb-dep", "api_key": "az-key",
                                                        "api_base": "https://contoso.openai.azure.com",
                                                        "api_version": "2024-10-21"}},
        {"model_name": "claude", "deltallm_params": {"model": "anthropic/claude-3-5-haiku-latest",
                                                     "api_key": "x"}},
        {"model_name": "mock-emb", "deltallm_params": {"model": "mock/emb", "mock_dimensions": 4}},
    ]
    return cfg


EMBEDDING = {"object": "list", "model": "text-embedding-3-small",
             "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
             "usage": {"prompt_tokens": 2, "total_tokens": 2}}


def test_embeddings_pass_through(client, auth, upstream):
    upstream.post(UPSTREAM + "/embeddings", json=EMBEDDING)
    resp = client.post("/v1/embeddings", headers=auth, json={"model": "gpt-4o-mini", "input": ["a b"],
                                                             "dimensions": 2, "encoding_format": "float"})
    assert resp.status_code == 200
    sent = upstream.calls[0].request
    assert json.loads(sent.body) == {"model": "gpt-4o-mini", "input": ["a b"], "dimensions": 2,
                                     "encoding_format": "float"}
    assert sent.headers["Authorization"] == "Bearer upstream-secret"
    openapi.check("CreateEmbeddingResponse", resp.get_json())
    CreateEmbeddingResponse.model_validate(resp.get_json())


def test_azure_embeddings_use_the_deployment_url(client, auth, upstream):
    upstream.post(AZURE + "/embeddings?api-version=2024-10-21", json=EMBEDDING)
    assert client.post("/v1/embeddings", headers=auth, json={"model": "azure-emb", "input": "x"}).status_code == 200
    assert upstream.calls[0].request.headers["api-key"] == "az-key"
    assert "Authorization" not in upstream.calls[0].request.headers


@pytest.mark.parametrize("value", ["", [], [""], [1, "a"], [[]], 5, None, [True]])
def test_embedding_input_is_checked(client, auth, value):
    resp = client.post("/v1/embeddings", headers=auth, json={"model": "gpt-4o-mini", "input": value})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "input"


def test_token_array_inputs_are_accepted(client, auth, upstream):
    upstream.post(UPSTREAM + "/embeddings", json=EMBEDDING)
    for value in ([1, 2, 3], [[1, 2], [3]]):
        assert client.post("/v1/embeddings", headers=auth,
                           json={"model": "gpt-4o-mini", "input": value}).status_code == 200


def test_mock_embeddings_are_deterministic(client, auth):
    def embed(**extra):
        return client.post("/v1/embeddings", headers=auth,
                           json={"model": "mock-emb", "input": ["same", "other"], **extra}).get_json()
    first, second = embed(), embed()
    assert first["data"] == second["data"] and len(first["data"][0]["embedding"]) == 4
    assert first["data"][0]["embedding"] != first["data"][1]["embedding"]
    openapi.check("CreateEmbeddingResponse", first)
    assert isinstance(embed(encoding_format="base64")["data"][0]["embedding"], str)


def test_provider_without_embeddings_is_a_clear_400(client, auth):
    resp = client.post("/v1/embeddings", headers=auth, json={"model": "claude", "input": "x"})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "unsupported_model"
    assert "embeddings" in resp.get_json()["error"]["message"]


def test_images(client, auth, upstream):
    body = {"created": 1700000000, "data": [{"b64_json": "aGk=", "revised_prompt": "a cat"}]}
    upstream.post(UPSTREAM + "/images/generations", json=body)
    resp = client.post("/v1/images/generations", headers=auth,
                       json={"model": "gpt-4o-mini", "prompt": "a cat", "size": "1024x1024",
                             "response_format": "b64_json", "n": 1, "quality": "hd"})
    assert resp.get_json() == body
    assert json.loads(upstream.calls[0].request.body)["quality"] == "hd"
    openapi.check("ImagesResponse", resp.get_json())
    ImagesResponse.model_validate(resp.get_json())


@pytest.mark.parametrize("body,param", [({"model": "gpt-4o-mini"}, "prompt"),
                                        ({"model": "gpt-4o-mini", "prompt": "x", "response_format": "gif"},
                                         "response_format"),
                                        ({"model": "gpt-4o-mini", "prompt": "x", "n": 0}, "n")])
def test_image_validation(client, auth, body, param):
    resp = client.post("/v1/images/generations", headers=auth, json=body)
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == param


def test_speech_streams_audio_with_its_type(client, auth, upstream):
    upstream.post(UPSTREAM + "/audio/speech", body=b"ID3" + b"\x00" * 5000, content_type="audio/mpeg")
    resp = client.post("/v1/audio/speech", headers=auth,
                       json={"model": "gpt-4o-mini", "input": "Hello", "voice": "alloy"})
    assert resp.status_code == 200 and resp.mimetype == "audio/mpeg"
    assert resp.data == b"ID3" + b"\x00" * 5000


def test_speech_validation(client, auth):
    resp = client.post("/v1/audio/speech", headers=auth,
                       json={"model": "gpt-4o-mini", "input": "Hi", "voice": "alloy", "response_format": "ogg"})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "response_format"
    resp = client.post("/v1/audio/speech", headers=auth, json={"model": "gpt-4o-mini", "input": "Hi"})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "voice"


def test_transcription_forwards_the_upload(client, auth, upstream):
    bodies = capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "hello"})
    resp = client.post("/v1/audio/transcriptions", headers=auth, content_type="multipart/form-data", data={
        "file": (io.BytesIO(b"RIFF....WAVEfmt "), "clip.wav", "audio/wav"), "model": "gpt-4o-mini",
        "language": "en", "response_format": "json", "timestamp_granularities[]": ["word", "segment"]})
    assert resp.status_code == 200 and resp.get_json() == {"text": "hello"}
    sent = upstream.calls[0].request
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    body = bodies[0]
    assert b'name="model"\r\n\r\ngpt-4o-mini' in body
    assert b'filename="clip.wav"' in body and b"RIFF....WAVEfmt " in body
    assert body.count(b'name="timestamp_granularities[]"') == 2


def test_transcription_errors(client, auth):
    no_file = client.post("/v1/audio/transcriptions", headers=auth, data={"model": "gpt-4o-mini"})
    assert no_file.status_code == 400 and no_file.get_json()["error"]["param"] == "file"
    no_model = client.post("/v1/audio/transcriptions", headers=auth,
                           data={"file": (io.BytesIO(b"x"), "a.wav")})
    assert no_model.status_code == 400 and no_model.get_json()["error"]["param"] == "model"


def test_transcription_upload_limit_is_413(tmp_path):
    app = create_app(dict(base_config(tmp_path, max_transcription_mb=0.01)))
    models.migrate()
    resp = app.test_client().post("/v1/audio/transcriptions", headers={"Authorization": "Bearer sk-master-test"},
                                  data={"model": "gpt-4o-mini", "file": (io.BytesIO(b"x" * 200_000), "a.wav")})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "request_too_large"
