"""Every failure on every route is the OpenAI error envelope with the right status."""
import pytest

from deltallm import create_app, models
from tests import openapi
from tests.conftest import base_config

CHAT = "/v1/chat/completions"


def error_of(resp, status):
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    openapi.check("ErrorResponse", body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in resp.get_data(as_text=True)
    assert resp.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/chat/completion"])
@pytest.mark.parametrize("with_key", [True, False])
def test_unknown_route_is_404_with_or_without_key(client, master, path, with_key):
    err = error_of(client.get(path, headers=master if with_key else {}), 404)
    assert (err["type"], err["code"]) == ("invalid_request_error", "not_found")


def test_wrong_method_is_405(client, master):
    err = error_of(client.get(CHAT, headers=master), 405)
    assert err["code"] == "method_not_allowed"
    assert error_of(client.delete("/v1/models", headers=master), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer sk-dl-0000000000000000-nope"}])
def test_bad_keys_are_401(client, headers):
    err = error_of(client.post(CHAT, json={}, headers=headers), 401)
    assert (err["type"], err["code"]) == ("authentication_error", "invalid_api_key")
    assert error_of(client.get("/v1/models", headers=headers), 401)["code"] == "invalid_api_key"


def test_malformed_json_is_400(client, auth):
    err = error_of(client.post(CHAT, data=b'{"model": ', headers=auth, content_type="application/json"), 400)
    assert err["type"] == "invalid_request_error"
    assert "parse the JSON" in err["message"]


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "gpt-4o-mini"}, "messages"),
    ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user"}]}, "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}, {"role": "assistant"}]},
     "messages[1].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
     "messages[0].content[0].type"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "1"}, "temperature"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, "stop"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
])
def test_schema_violations_name_the_param(client, auth, body, param):
    err = error_of(client.post(CHAT, json=body, headers=auth), 400)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


def test_body_must_be_an_object(client, auth):
    assert error_of(client.post(CHAT, json=[1, 2], headers=auth), 400)["type"] == "invalid_request_error"


def test_unknown_model_is_404(client, auth):
    err = error_of(client.post(CHAT, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                               headers=auth), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"


def test_oversized_body_is_413(tmp_path):
    app = create_app(base_config(tmp_path, max_request_body_mb=0.001))  # about 1 KB
    models.migrate()
    client = app.test_client()
    big = {"model": "mocky", "messages": [{"role": "user", "content": "x" * 5000}]}
    err = error_of(client.post(CHAT, json=big, headers={"Authorization": "Bearer sk-master-test"}), 413)
    assert (err["type"], err["code"]) == ("invalid_request_error", "request_too_large")


def test_unexpected_bug_is_500_without_traceback(app, client, auth, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(app.extensions["deltallm"].router, "run", explode)
    resp = client.post(CHAT, json={"model": "mocky", "messages": [{"role": "user", "content": "x"}]},
                       headers={**auth, "x-request-id": "req-boom"})
    err = error_of(resp, 500)
    assert err["type"] == "server_error"
    assert "secret internals" not in resp.get_data(as_text=True)
    assert "req-boom" in err["message"]


def test_request_id_from_client_is_kept_only_when_plausible(client):
    assert client.get("/health/liveliness", headers={"x-request-id": "abc-123_x"}).headers["x-request-id"] == "abc-123_x"
    weird = client.get("/health/liveliness", headers={"x-request-id": "a b<script>" + "x" * 200})
    assert weird.headers["x-request-id"].startswith("req_")
