"""model_info.mode decides which endpoints a deployment serves; a mismatch is a 400 before any upstream call."""
import pytest

from tests.conftest import UPSTREAM, base_config


def deployment(name, mode=None, model="openai/x"):
    entry = {"model_name": name, "deltallm_params": {"model": model, "api_base": UPSTREAM, "api_key": "k"}}
    if mode:
        entry["model_info"] = {"mode": mode}
    return entry


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path)
    cfg["model_list"] += [deployment("emb", "embedding"), deployment("chatty", "chat"),
                          deployment("legacy", "completion"), deployment("rr", "rerank"),
                          deployment("ears", "audio_transcription"), deployment("voice", "audio_speech"),
                          deployment("painter", "image_generation"), deployment("untyped"),
                          deployment("claude", model="anthropic/claude-3-5-haiku-latest")]
    cfg["deltallm_settings"] = {"fallbacks": [{"chatty": ["emb", "untyped"]}]}
    return cfg


CALLS = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/responses": {"input": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/images/generations": {"prompt": "a cat"},
    "/v1/audio/speech": {"input": "hi", "voice": "alloy"},
    "/v1/rerank": {"query": "q", "documents": ["a"]},
}
SERVES = {"emb": "/v1/embeddings", "rr": "/v1/rerank", "voice": "/v1/audio/speech",
          "painter": "/v1/images/generations"}


@pytest.mark.parametrize("model,mode", [("emb", "embedding"), ("rr", "rerank"), ("voice", "audio_speech"),
                                        ("painter", "image_generation"), ("ears", "audio_transcription")])
@pytest.mark.parametrize("path", list(CALLS))
def test_a_model_of_another_mode_is_refused_before_the_upstream(client, auth, upstream, model, mode, path):
    if SERVES.get(model) == path:
        return
    resp = client.post(path, headers=auth, json={"model": model, **CALLS[path]})
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "unsupported_model" and error["type"] == "invalid_request_error"
    assert f"mode: {mode}" in error["message"] and path in error["message"] and error["param"] == "model"
    assert len(upstream.calls) == 0


@pytest.mark.parametrize("model", ["chatty", "legacy", "claude"])
def test_chat_models_do_not_embed_or_rerank(client, auth, upstream, model):
    for path in ("/v1/embeddings", "/v1/rerank", "/v1/audio/speech"):
        resp = client.post(path, headers=auth, json={"model": model, **CALLS[path]})
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "unsupported_model"
        assert "mode: chat" in resp.get_json()["error"]["message"]
    assert len(upstream.calls) == 0


def test_a_model_without_mode_may_serve_any_endpoint(client, auth, upstream):
    upstream.post(UPSTREAM + "/embeddings", json={"object": "list", "model": "x", "data": [
        {"object": "embedding", "index": 0, "embedding": [0.5]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    upstream.post(UPSTREAM + "/rerank", json={"results": [{"index": 0, "relevance_score": 0.5}]})
    for path in ("/v1/embeddings", "/v1/rerank"):
        assert client.post(path, headers=auth, json={"model": "untyped", **CALLS[path]}).status_code == 200


def test_chat_modes_serve_all_three_chat_endpoints(client, auth, upstream):
    from tests.helpers import completion
    upstream.post(UPSTREAM + "/chat/completions", json=completion())
    for model in ("chatty", "legacy"):
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
            assert client.post(path, headers=auth, json={"model": model, **CALLS[path]}).status_code == 200


def test_transcription_to_an_embedding_model_is_refused(client, auth, upstream):
    import io
    for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
        resp = client.post(path, headers=auth, data={"model": "emb", "file": (io.BytesIO(b"RIFF"), "a.wav")},
                           content_type="multipart/form-data")
        assert resp.status_code == 400 and "mode: embedding" in resp.get_json()["error"]["message"]
    assert len(upstream.calls) == 0


def test_fallback_groups_of_another_mode_are_skipped(client, auth, upstream):
    from tests.helpers import completion
    upstream.post(UPSTREAM + "/chat/completions", status=500, json={"error": {"message": "down"}})
    resp = client.post("/v1/chat/completions", headers=auth, json={"model": "chatty", **CALLS["/v1/chat/completions"]})
    assert resp.status_code == 502
    sent = [c.request.body for c in upstream.calls]
    assert all(b'"model":"x"' in body for body in sent)  # chatty and untyped (both openai/x), never emb's embeddings
    assert not any(c.request.url.endswith("/embeddings") for c in upstream.calls)
    del completion


def test_mixed_group_routes_only_to_deployments_of_the_mode(tmp_path):
    from deltallm.errors import InvalidRequest
    from deltallm.router.deployment import Deployment
    from deltallm.router.modes import serving
    chat = Deployment("m", {"model": "openai/a"}, {"mode": "chat"})
    emb = Deployment("m", {"model": "openai/b"}, {"mode": "embedding"})
    bare = Deployment("m", {"model": "openai/c"})
    assert serving([chat, emb, bare], "embedding", "/v1/embeddings", "m") == [emb, bare]
    assert serving([chat, emb], None, None, "m") == [chat, emb]
    with pytest.raises(InvalidRequest):
        serving([chat], "rerank", "/v1/rerank", "m")
