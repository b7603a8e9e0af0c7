"""Hostile upstreams against real gunicorn/gevent (one worker): an endless stream line fails only its
own stream, a dripping upstream (body or headers) is cut at `timeout`, and non-completion JSON is a 502."""
import socket
import threading
import time

import pytest
import requests

from tests.e2e.conftest import MASTER, running_gateway
from tests.helpers import parse_sse

AUTH = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def header_dripper():
    """A server that answers any request with a status line, then one header byte every 0.5 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn):
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.is_set():
                    conn.sendall(b"X")
                    time.sleep(0.5)
            except OSError:
                pass

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


@pytest.fixture(scope="module")
def gateway(upstream_url, header_dripper, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    config = f"""
model_list:
  - model_name: gpt
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream_url}/v1, api_key: upstream-secret,
                       timeout: 3}}
  - model_name: slow-headers
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {header_dripper}/v1, api_key: k, timeout: 3}}
general_settings:
  master_key: {MASTER}
  database_url: {tmp / "hostile.db"}
"""
    with running_gateway(config, tmp, WEB_CONCURRENCY="1") as url:
        yield url


def chat(url, text, stream=False, timeout=120, model="gpt"):
    return requests.post(url + "/v1/chat/completions", headers=AUTH, timeout=timeout, stream=stream,
                         json={"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})


def test_an_endless_line_fails_its_stream_while_another_stream_on_the_worker_completes(gateway):
    """400 MB without a newline: the old reader rescanned its whole buffer per read (minutes of CPU,
    then gunicorn killed the worker and every stream on it); now the event bound (8 MB) ends it."""
    results = {}

    def huge():
        started = time.monotonic()
        resp = chat(gateway, "[[huge-line:400]] big", stream=True)
        results["huge"] = (resp.status_code, parse_sse(resp.content), time.monotonic() - started)

    thread = threading.Thread(target=huge)
    thread.start()
    time.sleep(0.3)  # the huge stream is under way on the only worker
    started = time.monotonic()
    normal = chat(gateway, "[[word-delay:0.05]] one two three four five six", stream=True)
    events = parse_sse(normal.content)
    normal_took = time.monotonic() - started
    thread.join(120)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices")) \
        == "echo: one two three four five six"
    assert normal_took < 15, normal_took
    status, huge_events, huge_took = results["huge"]
    assert status == 200 and huge_took < 60
    error = huge_events[-1]["error"]
    assert error["type"] == "upstream_error" and "max_stream_event_mb" in error["message"]


def test_a_dripping_upstream_is_cut_at_the_timeout(gateway):
    """One byte a second under `timeout: 3`: 504 in about 3 s (it was one byte per read timeout,
    i.e. minutes for a whole completion); and the single deployment is not tried again."""
    started = time.monotonic()
    resp = chat(gateway, "[[drip:1]] slow", timeout=120)
    took = time.monotonic() - started
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"]["type"] == "timeout_error"
    assert 2.5 < took < 15, took


def test_dripping_response_headers_are_cut_at_the_timeout_too(gateway):
    """Per-read timeouts never fire on a byte every 0.5 s; the gevent deadline over connect, send
    and headers does."""
    started = time.monotonic()
    resp = chat(gateway, "hi", model="slow-headers", timeout=60)
    took = time.monotonic() - started
    assert resp.status_code == 504, resp.text
    assert 2.5 < took < 15, took


def test_json_that_is_not_a_completion_is_a_502(gateway):
    resp = chat(gateway, "[[reply-json:42]] hi")
    assert resp.status_code == 502
    assert resp.json()["error"]["type"] == "upstream_error"
