"""One access-log line per request, JSON or text, written at the end of streams, never with the key."""
import json

import pytest
import requests

from deltallm import keys
from deltallm.api import access
from tests.e2e.conftest import MASTER, gateway_config, running_gateway

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


class Lines(list):
    """The lines written, once access logging is initialised with a format."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.monkeypatch = monkeypatch

    def init(self, fmt):
        access.init(fmt)
        if access.settings["write"] is not None:
            self.monkeypatch.setitem(access.settings, "write", lambda line: self.append(line.rstrip("\n")))


@pytest.fixture
def lines(app, monkeypatch):
    written = Lines(monkeypatch)
    written.init("json")
    return written


def records(lines):
    return [json.loads(line) for line in lines]


def test_one_json_line_per_request_with_key_id_model_and_tokens(client, lines):
    row, key = keys.create_key(name="logged")
    resp = client.post(CHAT, json={"model": "mocky", "messages": HELLO},
                       headers={"Authorization": f"Bearer {key}", "x-request-id": "req-log-1"})
    assert resp.status_code == 200
    [line] = records(lines)
    usage = resp.get_json()["usage"]
    assert line["request_id"] == "req-log-1" and line["key_id"] == row.id
    assert (line["method"], line["path"], line["status"]) == ("POST", CHAT, 200)
    assert line["model"] == "mocky" and line["deployment"] == resp.headers["x-deltallm-deployment"]
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (
        usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
    assert line["stream"] is False and line["upstream_ms"] >= 0 and line["overhead_ms"] >= 0
    assert line["time"].endswith("Z")
    # sk-dl-<id>-<secret>: the secret itself may contain "-" (token_urlsafe), so split from the left
    assert key not in lines[0] and key.split("-", 3)[3] not in lines[0]


def test_stream_is_logged_when_it_ends_with_its_usage(client, master, lines):
    resp = client.post(CHAT, json={"model": "mocky", "messages": HELLO, "stream": True,
                                   "stream_options": {"include_usage": True}}, headers=master)
    assert lines == []  # nothing before the body is sent
    body = resp.get_data()
    resp.close()
    [line] = records(lines)
    assert b"[DONE]" in body and line["stream"] is True and line["status"] == 200
    assert line["key_id"] == "master" and line["model"] == "mocky" and line["total_tokens"] > 0


def test_refused_key_is_logged_without_the_key(client, lines):
    bad = "sk-dl-0123456789abcdef-notreallyasecret"
    resp = client.get("/v1/models", headers={"Authorization": f"Bearer {bad}"})
    assert resp.status_code == 401
    [line] = records(lines)
    assert line["status"] == 401 and line["key_id"] is None and line["path"] == "/v1/models"
    assert "notreallyasecret" not in lines[0]


def test_text_format_is_one_readable_line(client, master, lines):
    lines.init("text")
    client.get("/v1/models", headers=master)
    [line] = lines
    assert " GET /v1/models 200 key=master " in line and "stream=false" in line


def test_disabled_logging_does_no_work(client, master, lines, monkeypatch):
    lines.init("off")
    monkeypatch.setattr(access, "entry", lambda *a: pytest.fail("built a log entry"))
    assert client.get("/v1/models", headers=master).status_code == 200
    assert lines == []


def test_json_by_default_under_gunicorn(upstream_url, tmp_path):
    with running_gateway(gateway_config(upstream_url, tmp_path / "log.db"), tmp_path) as url:
        resp = requests.post(url + CHAT, json={"model": "mocky", "messages": HELLO},
                             headers={"Authorization": f"Bearer {MASTER}", "x-request-id": "req-e2e-log"},
                             timeout=30)
        assert resp.status_code == 200
        stream = requests.post(url + CHAT, json={"model": "mocky", "messages": HELLO, "stream": True},
                               headers={"Authorization": f"Bearer {MASTER}", "x-request-id": "req-e2e-stream"},
                               timeout=30)
        assert b"[DONE]" in stream.content
    logged = {}
    for text in (tmp_path / "gunicorn.log").read_text().splitlines():
        if text.startswith("{"):
            line = json.loads(text)
            logged[line["request_id"]] = line
    assert logged["req-e2e-log"]["status"] == 200 and logged["req-e2e-log"]["stream"] is False
    assert logged["req-e2e-log"]["total_tokens"] > 0 and logged["req-e2e-log"]["deployment"]
    assert logged["req-e2e-stream"]["stream"] is True and logged["req-e2e-stream"]["model"] == "mocky"
    assert MASTER not in (tmp_path / "gunicorn.log").read_text()
