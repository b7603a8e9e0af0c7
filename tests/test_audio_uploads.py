"""Transcription and translation uploads: passed upstream as they arrive (a generator body, sent chunked),
or spooled with a Content-Length when the model comes after the file; formats and their content types."""
import io
import json

import pytest

from tests.conftest import UPSTREAM, base_config

AZURE = "https://contoso.openai.azure.com/openai/deployments/whisper-dep"


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path)
    cfg["model_list"] += [
        {"model_name": "azure-whisper", "deltallm_params": {"model": "azure/whisper-dep", "api_key": "az-key",
                                                           "api_base": "https://contoso.openai.azure.com",
                                                           "api_version": "2024-10-21"}},
        {"model_name": "two", "deltallm_params": {"model": "openai/w1", "api_base": UPSTREAM, "api_key": "k"}},
        {"model_name": "two", "deltallm_params": {"model": "openai/w2", "api_base": UPSTREAM, "api_key": "k"}},
    ]
    return cfg


def capture(upstream, url, reply, status=200, content_type="application/json"):
    """Answer POSTs to `url` with `reply`, keeping each request's body (a streamed one joined)."""
    bodies = []

    def answer(request):
        body = request.body
        bodies.append(body if isinstance(body, bytes) else b"".join(body))
        return status, {"Content-Type": content_type}, reply if isinstance(reply, str) else json.dumps(reply)
    upstream.add_callback("POST", url, callback=answer)
    return bodies


def multipart(parts, boundary="b0undary"):
    """A multipart body with parts in the given order: (name, value) or (name, (filename, bytes))."""
    out = b""
    for name, value in parts:
        if isinstance(value, tuple):
            out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                    f"Content-Type: audio/wav\r\n\r\n").encode() + value[1] + b"\r\n"
        else:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(client, auth, path, parts):
    data, content_type = multipart(parts)
    return client.post(path, headers=auth, data=data, content_type=content_type)


AUDIO = b"RIFF" + bytes(range(256)) * 40


def test_model_first_streams_the_file_chunked(client, auth, upstream):
    bodies = capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "hi"})
    resp = post(client, auth, "/v1/audio/transcriptions",
                [("model", "gpt-4o-mini"), ("file", ("a.wav", AUDIO)), ("language", "en")])
    assert resp.status_code == 200 and resp.get_json() == {"text": "hi"}
    request = upstream.calls[0].request
    assert "Content-Length" not in request.headers  # a generator: requests sends it chunked
    assert not isinstance(request.body, bytes)
    body = bodies[0]
    assert AUDIO in body and b'name="language"\r\n\r\nen\r\n' in body
    assert body.index(b'name="model"') < body.index(b'filename="a.wav"') < body.index(b'name="language"')
    assert body.endswith(b"--\r\n") and b"Content-Type: audio/wav" in body


def test_model_after_the_file_is_spooled_with_a_length(client, auth, upstream):
    bodies = capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "hi"})
    resp = post(client, auth, "/v1/audio/transcriptions", [("file", ("a.wav", AUDIO)), ("model", "gpt-4o-mini")])
    assert resp.status_code == 200
    request = upstream.calls[0].request
    assert int(request.headers["Content-Length"]) == len(bodies[0])
    assert AUDIO in bodies[0] and b"gpt-4o-mini" in bodies[0]


def test_a_spooled_upload_is_sent_again_to_the_next_deployment(client, auth, upstream):
    calls = []

    def answer(request):
        calls.append(b"".join(request.body) if not isinstance(request.body, bytes) else request.body)
        if len(calls) == 1:
            return 500, {}, json.dumps({"error": {"message": "boom"}})
        return 200, {"Content-Type": "application/json"}, json.dumps({"text": "ok"})
    upstream.add_callback("POST", UPSTREAM + "/audio/transcriptions", callback=answer)
    resp = post(client, auth, "/v1/audio/transcriptions", [("file", ("a.wav", AUDIO)), ("model", "two")])
    assert resp.status_code == 200 and len(calls) == 2 and AUDIO in calls[1]


def test_a_streamed_upload_is_not_retried_once_sent(client, auth, upstream):
    capture(upstream, UPSTREAM + "/audio/transcriptions", {"error": {"message": "boom"}}, status=500)
    resp = post(client, auth, "/v1/audio/transcriptions", [("model", "two"), ("file", ("a.wav", AUDIO))])
    assert resp.status_code == 502 and len(upstream.calls) == 1


@pytest.mark.parametrize("fmt,content_type", [("text", "text/plain; charset=utf-8"), ("srt", "text/plain; charset=utf-8"),
                                              ("vtt", "text/plain; charset=utf-8"), ("json", "application/json")])
def test_translation_formats_and_content_types(client, auth, upstream, fmt, content_type):
    reply = {"text": "hello"} if fmt == "json" else "1\n00:00:00,000 --> 00:00:01,000\nhello\n"
    bodies = capture(upstream, UPSTREAM + "/audio/translations", reply,
                     content_type="application/json" if fmt == "json" else "text/plain")
    resp = post(client, auth, "/v1/audio/translations",
                [("model", "gpt-4o-mini"), ("response_format", fmt), ("file", ("a.mp3", AUDIO))])
    assert resp.status_code == 200 and resp.headers["Content-Type"] == content_type
    assert b'name="response_format"\r\n\r\n' + fmt.encode() in bodies[0]


def test_azure_translations_use_the_deployment_url(client, auth, upstream):
    bodies = capture(upstream, AZURE + "/audio/translations?api-version=2024-10-21", {"text": "hello"})
    resp = post(client, auth, "/v1/audio/translations", [("model", "azure-whisper"), ("file", ("a.wav", AUDIO))])
    assert resp.status_code == 200 and resp.get_json() == {"text": "hello"}
    assert upstream.calls[0].request.headers["api-key"] == "az-key" and b"whisper-dep" in bodies[0]


@pytest.mark.parametrize("parts,param", [
    ([("model", "gpt-4o-mini"), ("response_format", "xml"), ("file", ("a.wav", b"x"))], "response_format"),
    ([("model", "gpt-4o-mini")], "file"),
    ([("file", ("a.wav", b"x"))], "model"),
    ([("model", "gpt-4o-mini"), ("file", ("a.wav", b"x")), ("file", ("b.wav", b"y"))], "file"),
])
def test_bad_forms_are_400(client, auth, upstream, parts, param):
    capture(upstream, UPSTREAM + "/audio/translations", {"text": "x"})
    resp = post(client, auth, "/v1/audio/translations", parts)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["param"] == param


def test_bad_field_after_the_file_stops_the_upload(client, auth, upstream):
    capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "x"})
    resp = post(client, auth, "/v1/audio/transcriptions",
                [("model", "gpt-4o-mini"), ("file", ("a.wav", AUDIO)), ("response_format", "xml")])
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "response_format"


def test_an_upload_over_the_limit_is_413_while_streaming(tmp_path, upstream):
    from deltallm import create_app, models
    app = create_app(dict(base_config(tmp_path, max_transcription_mb=0.1)))
    models.migrate()
    capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "x"})
    data, content_type = multipart([("model", "gpt-4o-mini"), ("file", ("a.wav", b"x" * 300_000))])
    resp = app.test_client().post("/v1/audio/transcriptions", headers={"Authorization": "Bearer sk-master-test"},
                                  data=data, content_type=content_type)
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "request_too_large"


def test_transcription_duration_is_billed_in_seconds(client, auth, upstream, app):
    capture(upstream, UPSTREAM + "/audio/transcriptions", {"text": "hi", "usage": {"type": "duration", "seconds": 7}})
    from flask import g
    seen = {}

    @app.after_request
    def keep(response):
        call = getattr(g, "call", None)
        if call is not None:
            seen.update(call.units)
        return response
    assert post(client, auth, "/v1/audio/transcriptions",
                [("model", "gpt-4o-mini"), ("file", ("a.wav", AUDIO))]).status_code == 200
    assert seen == {"seconds": 7.0}
