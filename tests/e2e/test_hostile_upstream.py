"""Hostile upstreams against real gunicorn/gevent (one worker): an endless stream line fails only its
own stream, a dripping upstream is cut at `timeout`, and non-completion JSON is a 502."""
import threading
import time

import pytest
import requests

from tests.e2e.conftest import MASTER, running_gateway
from tests.helpers import parse_sse

AUTH = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    config = f"""
model_list:
  - model_name: gpt
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream_url}/v1, api_key: upstream-secret,
                       timeout: 3}}
general_settings:
  master_key: {MASTER}
  database_url: {tmp / "hostile.db"}
"""
    with running_gateway(config, tmp, WEB_CONCURRENCY="1") as url:
        yield url


def chat(url, text, stream=False, timeout=120):
    return requests.post(url + "/v1/chat/completions", headers=AUTH, timeout=timeout, stream=stream,
                         json={"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": text}]})


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


def test_json_that_is_not_a_completion_is_a_502(gateway):
    resp = chat(gateway, "[[reply-json:42]] hi")
    assert resp.status_code == 502
    assert resp.json()["error"]["type"] == "upstream_error"
