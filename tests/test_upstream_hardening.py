"""Issue 6: bounded stream events, deadlines, non-completion JSON, leaked upstream text, Retry-After,
proxies and CA bundles, and connection errors that name the host: against real local sockets
(tests/fakes/scripted.py) or the `responses` mock."""
import itertools
import logging
import time

import orjson
import pytest
import requests
import responses

from deltallm import config
from deltallm.errors import UpstreamAuthFailed, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from deltallm.providers.base import Call, retry_after_seconds
from deltallm.providers.redact import clean
from deltallm.providers.transport import HttpOptions, bypasses
from deltallm.router.deployment import Deployment
from deltallm.router.registry import ModelRegistry
from deltallm.router.policy import Policy
from deltallm.router.router import Router
from tests.conftest import UPSTREAM
from tests.fakes.scripted import ForwardProxy, Scripted, closed_port, drip
from tests.helpers import chunk, completion, parse_sse, sse

URL = UPSTREAM + "/chat/completions"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
SSE = [("Content-Type", "text/event-stream")]


@pytest.fixture
def server():
    fake = Scripted()
    yield fake
    fake.close()


def openai_deployment(base, http=None, **params):
    return Deployment("gpt", dict({"model": "openai/gpt-4o-mini", "api_base": base + "/v1",
                                   "api_key": "sk-upstream-secret-1234567890"}, **params), http=http)


def drain(chunks):
    return list(chunks)


# -- item 2: one stream event is bounded, and scanned once --------------------------------------
def test_a_line_without_end_fails_only_its_stream_at_the_event_bound(server):
    def endless(req):
        def body():
            yield b"data: " + orjson.dumps(chunk({"role": "assistant", "content": ""})) + b"\n\n"
            for _ in range(400):  # 400 MB if nobody stops reading
                yield b"x" * 1048576
        return 200, SSE, body()
    server.handler = endless
    adapter = openai_deployment(server.url, HttpOptions(max_event_mb=2)).adapter
    chunks = adapter.chat_stream(Call("r"), CHAT)
    assert next(chunks)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    started = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        next(chunks)
    assert "larger than 2 MB" in err.value.message and "max_stream_event_mb" in err.value.message
    assert time.monotonic() - started < 20


def test_many_data_lines_of_one_event_count_towards_the_bound(server):
    server.handler = lambda req: (200, SSE, iter([b"data: " + b"y" * 1000 + b"\n"] * 3000))
    adapter = openai_deployment(server.url, HttpOptions(max_event_mb=1)).adapter
    with pytest.raises(UpstreamError, match="larger than 1 MB"):
        drain(adapter.chat_stream(Call("r"), CHAT))


def test_a_big_event_under_the_bound_is_read_in_linear_time(server):
    """A 24 MB event in 4 KB pieces: rescanning the buffer per piece (the old reader) is ~70 GB of
    work; scanning only new bytes is ~24 MB."""
    text = "z" * (24 * 1048576)
    event = b"data: " + orjson.dumps(chunk({"content": text}, "stop")) + b"\n\n"
    pieces = [event[i:i + 4096] for i in range(0, len(event), 4096)]
    server.handler = lambda req: (200, SSE, iter(pieces + [b"data: [DONE]\n\n"]))
    adapter = openai_deployment(server.url, HttpOptions(max_event_mb=32)).adapter
    started = time.monotonic()
    chunks = drain(adapter.chat_stream(Call("r"), CHAT))
    assert chunks[0]["choices"][0]["delta"]["content"] == text
    assert time.monotonic() - started < 30


def test_bedrock_frames_are_bounded_before_they_are_buffered(server):
    # a frame whose prelude announces 100 MB: refused from its first four bytes
    server.handler = lambda req: (200, [("Content-Type", "application/vnd.amazon.eventstream")],
                                  iter([(100 * 1048576).to_bytes(4, "big") + b"\0" * 60000]))
    dep = Deployment("b", {"model": "bedrock/anthropic.claude", "api_base": server.url, "aws_region_name": "us-east-1",
                           "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "S"}, http=HttpOptions(max_event_mb=8))
    with pytest.raises(UpstreamError, match="frame larger than 8 MB"):
        drain(dep.adapter.chat_stream(Call("r"), CHAT))


# -- item 3: timeout is a deadline, stream_timeout bounds silence ------------------------------
def test_a_dripping_body_times_out_at_the_timeout_not_per_byte(server):
    body = orjson.dumps(completion())  # ~250 bytes at one a second: 4 minutes with a per-read timeout
    server.handler = lambda req: (200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                                  drip(body, 0.5))
    adapter = openai_deployment(server.url, timeout=2).adapter
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as err:
        adapter.chat(Call("r"), CHAT)
    assert time.monotonic() - started < 10
    assert "127.0.0.1" in err.value.message and err.value.status == 504


def test_a_dripping_chunked_body_times_out_too(server):
    body = orjson.dumps(completion())
    server.handler = lambda req: (200, [("Content-Type", "application/json")], drip(body, 0.5))
    adapter = openai_deployment(server.url, timeout=2).adapter
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        adapter.chat(Call("r"), CHAT)
    assert time.monotonic() - started < 10


def test_stream_timeout_bounds_the_silence_between_events_even_when_bytes_drip(server):
    first = b"data: " + orjson.dumps(chunk({"role": "assistant", "content": ""})) + b"\n\n"
    server.handler = lambda req: (200, SSE, itertools.chain([first], drip(b"data: " + b"q" * 200, 0.3)))
    adapter = openai_deployment(server.url, stream_timeout=1.5).adapter
    chunks = adapter.chat_stream(Call("r"), CHAT)
    next(chunks)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="stream_timeout"):
        next(chunks)
    assert time.monotonic() - started < 10


def test_a_steady_stream_longer_than_stream_timeout_is_fine(server):
    events = [b"data: " + orjson.dumps(chunk({"content": f"w{i} "})) + b"\n\n" for i in range(6)]
    events += [sse(chunk({}, "stop"))]

    def paced():
        for item in events:
            time.sleep(0.3)
            yield item
    server.handler = lambda req: (200, SSE, paced())
    adapter = openai_deployment(server.url, stream_timeout=1).adapter
    assert len(drain(adapter.chat_stream(Call("r"), CHAT))) == 7  # 2.1 s in all, 0.3 s apart


def router_for(*deployments, num_retries=2):
    registry = ModelRegistry()
    for dep in deployments:
        registry.add(dep)
    return Router(registry, Policy({"num_retries": num_retries}))


def test_a_timed_out_deployment_is_not_tried_again(server):
    body = orjson.dumps(completion())
    server.handler = lambda req: (200, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                                  drip(body, 0.5))
    router = router_for(openai_deployment(server.url, timeout=1.5))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        router.run(Call("r"), "gpt", lambda d: d.adapter.chat(Call("r"), CHAT))
    assert len(server.requests) == 1  # num_retries 2, but a timeout already cost the whole timeout
    assert time.monotonic() - started < 8


def test_retries_share_one_deadline(server):
    """A fast failure, then a slow deployment: the second attempt only gets what is left."""
    slow = Scripted(lambda req: (200, [("Content-Type", "application/json")], drip(b"{" * 100, 0.5)))
    try:
        server.handler = lambda req: (500, [("Content-Type", "application/json")], b'{"error": {"message": "boom"}}')
        failing, dripping = openai_deployment(server.url, timeout=3), openai_deployment(slow.url, timeout=3)
        router = router_for(failing, dripping, num_retries=5)
        call = Call("r")
        started = time.monotonic()
        with pytest.raises((UpstreamTimeout, UpstreamError)):
            router.run(call, "gpt", lambda d: d.adapter.chat(call, CHAT))
        assert time.monotonic() - started < 3 + 4  # not 3 s per attempt
        assert len(slow.requests) == 1
    finally:
        slow.close()


# -- item 9: JSON that is not a completion is the upstream's fault ------------------------------
@pytest.mark.parametrize("body", [[1, 2, 3], 42, {}, {"choices": 5}, {"choices": [1]}, {"choices": [{"index": 0}]},
                                  {"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]},
                                  "text", None])
@pytest.mark.parametrize("route, request_body", [
    ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}),
    ("/v1/completions", {"model": "gpt-4o-mini", "prompt": "Hi"}),
    ("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi"}),
])
def test_json_that_is_not_a_completion_is_a_502(client, auth, upstream, body, route, request_body):
    upstream.post(URL, body=orjson.dumps(body), content_type="application/json")
    resp = client.post(route, json=request_body, headers=auth)
    assert resp.status_code == 502, resp.get_json()
    assert resp.get_json()["error"]["type"] == "upstream_error"


@pytest.mark.parametrize("bad", [b"[1, 2]", b"42", b'"text"', b'{"choices": 7}'])
def test_a_stream_chunk_that_is_not_an_object_is_an_upstream_error_event(client, auth, upstream, bad):
    good = b"data: " + orjson.dumps(chunk({"role": "assistant", "content": ""})) + b"\n\n"
    upstream.post(URL, body=good + b"data: " + bad + b"\n\n", content_type="text/event-stream")
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]})
    events = parse_sse(resp.data)
    assert events[-1]["error"]["type"] == "upstream_error", events


@responses.activate
@pytest.mark.parametrize("model, url, body", [
    ("anthropic/claude", "https://a.test/v1/messages", {}),
    ("anthropic/claude", "https://a.test/v1/messages", {"content": [1, 2]}),
    ("gemini/g", "https://a.test/v1/models/g:generateContent", {}),
    ("gemini/g", "https://a.test/v1/models/g:generateContent", {"candidates": [[1]]}),
])
def test_a_native_provider_unexpected_shape_is_a_502(model, url, body):
    responses.add(responses.POST, url, json=body)
    dep = Deployment("x", {"model": model, "api_base": "https://a.test/v1", "api_key": "k"})
    with pytest.raises(UpstreamError) as err:
        dep.adapter.chat(Call("r"), CHAT)
    assert err.value.status == 502


@responses.activate
def test_a_bedrock_unexpected_shape_is_a_502():
    url = "https://br.test/model/m/converse"
    responses.add(responses.POST, url, json={"output": 5})
    dep = Deployment("x", {"model": "bedrock/m", "api_base": "https://br.test", "aws_region_name": "us-east-1",
                           "aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "S"})
    with pytest.raises(UpstreamError):
        dep.adapter.chat(Call("r"), CHAT)


# -- item 10: upstream text that could leak -----------------------------------------------------
def test_an_upstream_401_is_not_relayed_but_names_the_deployment(client, auth, upstream, caplog):
    upstream.post(URL, status=401, json={"error": {
        "message": "Incorrect API key provided: sk-upst***7890. You can find your API key at ...",
        "type": "invalid_request_error", "code": "invalid_api_key"}})
    with caplog.at_level(logging.WARNING, logger="deltallm"):
        resp = client.post("/v1/chat/completions", headers=auth, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    error = resp.get_json()["error"]
    assert resp.status_code == 502 and error["code"] == "upstream_auth_failed"
    assert "Incorrect API key" not in error["message"] and "7890" not in error["message"]
    assert "gpt-4o-mini" in error["message"] and "dep_" in error["message"]
    logged = caplog.text
    assert "Incorrect API key provided" in logged  # the operator sees why
    assert "7890" not in logged and "upstream-secret" not in logged


def test_relayed_upstream_messages_are_capped_and_masked(client, auth, upstream):
    message = "Bad key sk-proj-abcdefghijklmnop1234 and Bearer abc.def.ghi123 in " + "x" * 5_000_000
    upstream.post(URL, status=400, json={"error": {"message": message, "type": "invalid_request_error"}})
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status_code == 400
    relayed = resp.get_json()["error"]["message"]
    assert len(relayed) <= 2100
    assert "sk-proj" not in relayed and "abcdefghijklmnop" not in relayed and "abc.def" not in relayed


@pytest.mark.parametrize("text, secret", [
    ("key=AIzaSyA1234567890abcdefghijklmnopq in https://x.test/v1?key=AIzaSyA1234567890abcdefghijklmnopq",
     "AIzaSyA1234567890"),
    ("The security token AKIAIOSFODNN7EXAMPLE is invalid", "AKIAIOSFODNN7EXAMPLE"),
    ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY rejected", "wJalrXUtnFEMI"),
    ('{"api_key": "hunter2hunter2"}', "hunter2"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc", "eyJhbGci"),
    ("Access denied due to invalid subscription key 0123456789abcdef0123456789abcdef", "0123456789abcdef"),
    ("proxy http://user:pa55word@proxy.test:3128 refused", "pa55word"),
])
def test_clean_masks_credential_shapes(text, secret):
    assert secret not in clean(text)


def test_clean_leaves_ordinary_messages_alone():
    text = "This model's maximum context length is 128000 tokens (model gpt-4o-mini-2024-07-18). Error code: 400"
    assert clean(text) == text


# -- item 11: Retry-After ------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)])
def test_retry_after_values(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date():
    from email.utils import formatdate
    assert 5 < retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10


def rate_limited(retry_after):
    exc = UpstreamRateLimited("slow down", headers={"Retry-After": retry_after})
    exc.retry_after = retry_after_seconds(retry_after)
    return exc


def test_the_same_deployment_is_retried_after_retry_after(monkeypatch):
    dep = Deployment("g", {"model": "openai/a", "api_base": "https://a.test/v1"})
    router = router_for(dep)
    slept, outcomes = [], [rate_limited("2"), "ok"]
    monkeypatch.setattr("deltallm.router.router.time.sleep", slept.append)

    def operation(d):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    assert router.run(Call("r"), "g", operation) == "ok"
    assert slept == [2.0]


def test_another_deployment_is_tried_at_once(monkeypatch):
    first = Deployment("g", {"model": "openai/a", "api_base": "https://a.test/v1"})
    second = Deployment("g", {"model": "openai/b", "api_base": "https://b.test/v1"})
    router = router_for(first, second)
    slept, seen = [], []
    monkeypatch.setattr("deltallm.router.router.time.sleep", slept.append)

    def operation(d):
        seen.append(d)
        if len(seen) == 1:
            raise rate_limited("30")
        return "ok"
    assert router.run(Call("r"), "g", operation) == "ok"
    assert slept == [] and seen[0] is not seen[1]


def test_a_retry_after_beyond_the_deadline_returns_the_429_at_once(monkeypatch):
    dep = Deployment("g", {"model": "openai/a", "api_base": "https://a.test/v1", "timeout": 5})
    router = router_for(dep)
    slept, calls = [], []
    monkeypatch.setattr("deltallm.router.router.time.sleep", slept.append)

    def operation(d):
        calls.append(d)
        raise rate_limited("60")
    with pytest.raises(UpstreamRateLimited) as err:
        router.run(Call("r"), "g", operation)
    assert slept == [] and len(calls) == 1
    assert err.value.headers == {"Retry-After": "60"}


def test_upstream_429_retry_after_through_the_api(client, auth, upstream, monkeypatch):
    slept = []
    monkeypatch.setattr("deltallm.router.router.time.sleep", slept.append)
    upstream.post(URL, status=429, json={"error": {"message": "slow"}}, headers={"Retry-After": "1"})
    upstream.post(URL, json=completion())
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status_code == 200 and slept == [1.0]


# -- item 14: proxies and CA bundles -------------------------------------------------------------
def test_upstream_environment_is_read_with_requests_names():
    env = {"HTTPS_PROXY": "http://corp:3128", "http_proxy": "http://lower:3128", "HTTP_PROXY": "http://upper:3128",
           "NO_PROXY": "localhost,.internal", "SSL_CERT_FILE": "/etc/ssl/x.pem"}
    assert config.upstream_environment(env) == {
        "proxies": {"https": "http://corp:3128", "http": "http://lower:3128"},
        "no_proxy": "localhost,.internal", "ca_bundle": "/etc/ssl/x.pem"}
    assert config.upstream_environment({"REQUESTS_CA_BUNDLE": "/a.pem", "SSL_CERT_FILE": "/b.pem"})["ca_bundle"] == "/a.pem"


@pytest.mark.parametrize("host, port, no_proxy, bypass", [
    ("api.internal", 443, ".internal", True), ("a.b.internal", 443, "internal", True),
    ("notinternal", 443, ".internal", False), ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("127.0.0.1", 8000, "127.0.0.1:9000", False), ("127.0.0.1", 9000, "127.0.0.1:9000", True),
    ("anything", 1, "*", True), ("api.openai.com", 443, "", False),
])
def test_no_proxy_rules(host, port, no_proxy, bypass):
    assert bypasses(host, port, no_proxy) is bypass


def test_env_proxy_is_used_and_no_proxy_bypasses_it(server):
    server.handler = lambda req: (200, [("Content-Type", "application/json")], orjson.dumps(completion()))
    proxy = ForwardProxy()
    try:
        via_proxy = openai_deployment(server.url, HttpOptions(proxies={"http": proxy.url}))
        assert via_proxy.adapter.chat(Call("r"), CHAT)["choices"][0]["message"]["content"] == "Hello!"
        assert proxy.seen == [server.url + "/v1/chat/completions"]
        direct = openai_deployment(server.url, HttpOptions(proxies={"http": proxy.url}, no_proxy="localhost,127.0.0.1"))
        direct.adapter.chat(Call("r"), CHAT)
        assert len(proxy.seen) == 1 and len(server.requests) == 2
    finally:
        proxy.close()


def test_a_deployment_proxy_wins_over_no_proxy(server):
    server.handler = lambda req: (200, [("Content-Type", "application/json")], orjson.dumps(completion()))
    proxy = ForwardProxy()
    try:
        dep = openai_deployment(server.url, HttpOptions(no_proxy="*"), proxy=proxy.url)
        dep.adapter.chat(Call("r"), CHAT)
        assert proxy.seen == [server.url + "/v1/chat/completions"]
    finally:
        proxy.close()


def test_an_unreachable_proxy_names_the_upstream_host_not_the_key():
    dep = Deployment("gpt", {"model": "openai/gpt-4o-mini", "api_base": "http://api.example.test/v1",
                             "api_key": "sk-upstream-secret-1234567890",
                             "proxy": f"http://127.0.0.1:{closed_port()}"})
    with pytest.raises(UpstreamError) as err:
        dep.adapter.chat(Call("r"), CHAT)
    assert "api.example.test" in err.value.message and "proxy" in err.value.message
    assert "secret" not in err.value.message


@pytest.mark.parametrize("params, options, verify", [
    ({}, HttpOptions(), True),
    ({}, HttpOptions(ca_bundle="/etc/corp-ca.pem"), "/etc/corp-ca.pem"),
    ({"ssl_verify": False}, HttpOptions(ca_bundle="/etc/corp-ca.pem"), False),
    ({"ssl_verify": "/opt/ca.pem"}, HttpOptions(ca_bundle="/etc/corp-ca.pem"), "/opt/ca.pem"),
    ({"ssl_verify": True}, HttpOptions(ca_bundle="/etc/corp-ca.pem"), "/etc/corp-ca.pem"),
])
def test_ssl_verify_reaches_the_transport(monkeypatch, params, options, verify):
    dep = Deployment("gpt", dict({"model": "openai/gpt-4o-mini", "api_base": "https://tls.test/v1"}, **params),
                     http=options)
    adapter = dep.adapter
    seen = {}

    def send(request, **kwargs):
        seen.update(kwargs)
        raise requests.ConnectionError("stop here")
    monkeypatch.setattr(adapter.transport, "send", send)
    with pytest.raises(UpstreamError):
        adapter.chat(Call("r"), CHAT)
    assert seen["verify"] == verify and seen["proxies"] is None


def test_the_gateway_passes_environment_and_event_bound_to_deployments(tmp_path, monkeypatch):
    from tests.conftest import base_config
    from deltallm import create_app
    monkeypatch.setenv("HTTPS_PROXY", "http://corp-proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "upstream.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    app = create_app(base_config(tmp_path, max_stream_event_mb=3))
    registry = app.extensions["deltallm"].registry
    direct = registry.group("gpt-4o-mini")[0].adapter  # https://upstream.test: NO_PROXY
    proxied = [d for d in registry.group("grouped") if d.provider == "groq"][0].adapter
    assert direct.proxies is None and proxied.proxies == {"https": "http://corp-proxy.test:3128"}
    assert direct.verify == "/etc/corp-ca.pem" and direct.options.max_event_bytes == 3 * 1048576


# -- item 18: connection errors name the host ----------------------------------------------------
def test_a_connection_error_names_the_upstream_host_and_logs_why(caplog):
    port = closed_port()
    dep = openai_deployment(f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="deltallm"), pytest.raises(UpstreamError) as err:
        dep.adapter.chat(Call("req-9"), CHAT)
    assert f"127.0.0.1:{port}" in err.value.message and "connection refused" in err.value.message
    assert "secret" not in err.value.message
    assert "req-9" in caplog.text and "Connection refused" in caplog.text


def test_an_upstream_5xx_message_reaches_the_log(client, auth, upstream, caplog):
    upstream.post(URL, status=503, json={"error": {"message": "engine overloaded, shard 7"}})
    with caplog.at_level(logging.WARNING, logger="deltallm"):
        resp = client.post("/v1/chat/completions", headers=auth, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status_code == 502
    assert "engine overloaded, shard 7" in caplog.text


def test_auth_failure_error_is_not_retryable_and_names_deployment():
    dep = Deployment("g", {"model": "openai/a", "api_base": "https://a.test/v1"})
    router = router_for(dep)

    def operation(d):
        exc = UpstreamAuthFailed("the openai upstream rejected the gateway's credentials (HTTP 401)")
        exc.upstream_message = "bad key"
        raise exc
    with pytest.raises(UpstreamAuthFailed) as err:
        router.run(Call("r"), "g", operation)
    assert dep.id in err.value.message and "`g`" in err.value.message


def test_the_deployments_own_key_is_masked_wherever_an_upstream_echoes_it(client, auth, upstream):
    upstream.post(URL, status=400, json={"error": {"message": "header value upstream-secret is not allowed"}})
    resp = client.post("/v1/chat/completions", headers=auth, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert resp.status_code == 400
    assert "upstream-secret" not in resp.get_json()["error"]["message"]


def test_a_proxy_password_is_not_shown_by_the_admin_view():
    dep = Deployment("g", {"model": "openai/a", "proxy": "http://user:hunter2@proxy.corp:3128"})
    assert dep.public()["deltallm_params"]["proxy"] == "http://user:***@proxy.corp:3128"
