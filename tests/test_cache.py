"""The response cache (SPEC §10): hits, misses, the client's controls, namespaces, stream replay, usage
records of hits, and a Redis that is down or silent during a cached request."""
import socket
import time
import uuid

import orjson
import pytest
import redis as redis_lib

from deltallm import create_app, keys, models
from deltallm.cache.stores import LocalStore, RedisStore
from deltallm.errors import ConfigError
from deltallm.models import Usage
from tests import openapi
from tests.conftest import REDIS_URL, UPSTREAM, base_config
from tests.helpers import chunk, completion, parse_sse, sse, usage_chunk

URL = UPSTREAM + "/chat/completions"


def make_app(tmp_path, **cache):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = base_config(tmp_path, cache={"type": "local", **cache})
    if cache.get("type") == "redis":
        config["general_settings"]["redis_url"] = REDIS_URL
    app = create_app(config)
    app.config["TESTING"] = True
    models.migrate()
    return app


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def redis_prefix(monkeypatch):
    """Cache entries of this test only, under a prefix of its own, deleted afterwards."""
    prefix = f"test:cache:{uuid.uuid4().hex[:10]}:"
    monkeypatch.setattr(RedisStore, "PREFIX", prefix)
    yield prefix
    client = redis_lib.Redis.from_url(REDIS_URL)
    found = list(client.scan_iter(match=prefix + "*", count=1000))
    if found:
        client.delete(*found)


def ask(client, headers, stream=False, **body):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": body.pop("text", "hi")}],
            "temperature": 0, **body}
    if stream:
        body["stream"] = True
    return client.post("/v1/chat/completions", json=body, headers=headers)


def ask_with(client, auth, headers=None, **body):
    return ask(client, {**auth, **(headers or {})}, **body)


def records(app):
    assert app.extensions["deltallm"].writer.drain()
    return list(Usage.select().order_by(Usage.id))


def test_second_identical_request_is_a_hit_with_a_free_usage_record(app, client, auth, upstream):
    upstream.post(URL, json=completion("cached answer"))
    first = ask(client, auth, user="alice", metadata={"a": "1"})
    second = ask(client, auth, user="bob")  # `user` and `metadata` are not part of the key
    assert (first.headers["x-deltallm-cache"], second.headers["x-deltallm-cache"]) == ("miss", "hit")
    assert len(upstream.calls) == 1
    assert second.get_json() == first.get_json()
    openapi.check("CreateChatCompletionResponse", second.get_json())
    assert second.headers["x-deltallm-deployment"] == first.headers["x-deltallm-deployment"]
    miss, hit = records(app)
    assert (miss.cache_hit, miss.spend > 0, miss.total_tokens) == (None, True, 7)
    assert (hit.cache_hit, hit.spend, hit.total_tokens, hit.status) == (True, 0.0, 0, 200)


def test_a_different_request_misses(client, auth, upstream):
    upstream.post(URL, json=completion())
    assert ask(client, auth, text="one").headers["x-deltallm-cache"] == "miss"
    assert ask(client, auth, text="two").headers["x-deltallm-cache"] == "miss"
    assert ask(client, auth, text="one", max_tokens=5).headers["x-deltallm-cache"] == "miss"
    assert len(upstream.calls) == 3


def test_sampled_requests_are_skipped_unless_cache_sampled(tmp_path, upstream):
    upstream.post(URL, json=completion())
    app = make_app(tmp_path)
    client, auth = app.test_client(), {"Authorization": f"Bearer {keys.create_key(name='s')[1]}"}
    for _ in range(2):
        assert ask(client, auth, temperature=0.7).headers["x-deltallm-cache"] == "skip"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}  # default temperature 1
        assert client.post("/v1/chat/completions", json=body, headers=auth).headers["x-deltallm-cache"] == "skip"
    assert len(upstream.calls) == 4
    sampled = make_app(tmp_path / "s", cache_sampled=True)
    client = sampled.test_client()
    auth = {"Authorization": f"Bearer {keys.create_key(name='t')[1]}"}
    assert [ask(client, auth, temperature=0.7).headers["x-deltallm-cache"] for _ in range(2)] == ["miss", "hit"]


@pytest.mark.parametrize("how", ["header", "body"])
def test_no_cache_skips_the_lookup_but_stores(client, auth, upstream, how):
    upstream.post(URL, json=completion("old"))
    ask(client, auth)
    upstream.replace("POST", URL, json=completion("new"))
    fresh = ask_with(client, auth, **({"headers": {"Cache-Control": "no-cache"}} if how == "header" else
                                      {"cache": {"no-cache": True}}))
    assert fresh.headers["x-deltallm-cache"] == "skip"
    assert fresh.get_json()["choices"][0]["message"]["content"] == "new"
    assert "cache" not in orjson.loads(upstream.calls[-1].request.body)  # consumed, never forwarded
    again = ask(client, auth)
    assert again.headers["x-deltallm-cache"] == "hit"
    assert again.get_json()["choices"][0]["message"]["content"] == "new"


@pytest.mark.parametrize("control", [{"headers": {"Cache-Control": "no-store"}}, {"cache": {"no-store": True}}])
def test_no_store_neither_looks_up_nor_stores(client, auth, upstream, control):
    upstream.post(URL, json=completion())
    assert ask_with(client, auth, **control).headers["x-deltallm-cache"] == "skip"
    assert ask_with(client, auth, **control).headers["x-deltallm-cache"] == "skip"
    assert ask(client, auth).headers["x-deltallm-cache"] == "miss"  # nothing was stored
    assert len(upstream.calls) == 3


def test_body_ttl_and_bad_controls(app, client, auth, upstream, monkeypatch):
    upstream.post(URL, json=completion())
    assert ask(client, auth, cache={"ttl": 1}).headers["x-deltallm-cache"] == "miss"
    assert ask(client, auth).headers["x-deltallm-cache"] == "hit"
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 2)  # the entry's one second has passed
    assert ask(client, auth).headers["x-deltallm-cache"] == "miss"
    for bad, param in (({"no-cach": True}, "cache.no-cach"), ({"ttl": -1}, "cache.ttl"), ("yes", "cache"),
                       ({"no-store": "yes"}, "cache.no-store")):
        resp = ask(client, auth, cache=bad)
        assert resp.status_code == 400 and resp.get_json()["error"]["param"] == param


def test_entries_are_per_key_unless_shared(tmp_path, upstream):
    upstream.post(URL, json=completion())
    for namespace, second_key in (("key", "miss"), ("shared", "hit")):
        app = make_app(tmp_path / namespace, namespace=namespace)
        client = app.test_client()
        one, two = ({"Authorization": f"Bearer {keys.create_key(name=n)[1]}"} for n in ("one", "two"))
        assert ask(client, one).headers["x-deltallm-cache"] == "miss"
        assert ask(client, one).headers["x-deltallm-cache"] == "hit"
        assert ask(client, two).headers["x-deltallm-cache"] == second_key


def test_stream_is_replayed_from_a_cached_stream(client, auth, upstream):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "Hel"}, usage=True),
                                chunk({"content": "lo"}, usage=True), chunk({}, "stop", usage=True), usage_chunk()),
                  content_type="text/event-stream")
    first = ask(client, auth, stream=True, stream_options={"include_usage": True})
    assert first.headers["x-deltallm-cache"] == "miss"
    original = parse_sse(first.data)
    replay = ask(client, auth, stream=True)  # stream_options is not part of the key: usage hidden on replay
    assert replay.headers["x-deltallm-cache"] == "hit" and replay.mimetype == "text/event-stream"
    events = parse_sse(replay.data)
    assert events[-1] == "[DONE]" and len(upstream.calls) == 1
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]) == "Hello"
    assert all("usage" not in e for e in events[:-1])
    with_usage = parse_sse(ask(client, auth, stream=True, stream_options={"include_usage": True}).data)
    assert with_usage == original
    for event in events[:-1]:
        openapi.check("CreateChatCompletionStreamResponse", event)


def test_stream_is_replayed_from_a_cached_json_answer(app, client, auth, upstream):
    upstream.post(URL, json=completion("whole answer"))
    assert ask(client, auth).headers["x-deltallm-cache"] == "miss"
    replay = ask(client, auth, stream=True, stream_options={"include_usage": True})
    assert replay.headers["x-deltallm-cache"] == "hit" and len(upstream.calls) == 1
    events = parse_sse(replay.data)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]) == \
        "whole answer"
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "stop"
    assert events[-2]["usage"]["total_tokens"] == 7
    for event in events[:-1]:
        openapi.check("CreateChatCompletionStreamResponse", event)
    hit = records(app)[-1]
    assert (hit.cache_hit, hit.stream, hit.spend) == (True, True, 0.0)


def test_a_cut_stream_is_not_cached(client, auth, upstream):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "Hel"}), done=False) + b"data: {bad",
                  content_type="text/event-stream")
    ask(client, auth, stream=True)
    upstream.replace("POST", URL, json=completion())
    assert ask(client, auth).headers["x-deltallm-cache"] == "miss"


def test_embeddings_and_responses_are_cached(client, auth, upstream):
    upstream.post(UPSTREAM + "/embeddings", json={"object": "list", "model": "text-embedding-3-small",
                                                  "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
                                                  "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    upstream.post(URL, json=completion())
    body = {"model": "gpt-4o-mini", "input": "x"}
    assert [client.post("/v1/embeddings", json=body, headers=auth).headers["x-deltallm-cache"]
            for _ in range(2)] == ["miss", "hit"]
    answers = [client.post("/v1/responses", json={**body, "temperature": 0}, headers=auth) for _ in range(2)]
    assert [a.headers["x-deltallm-cache"] for a in answers] == ["miss", "hit"]
    assert answers[0].get_json() == answers[1].get_json()
    assert len(upstream.calls) == 2


def test_local_store_is_bounded_in_bytes():
    store = LocalStore(max_bytes=100)
    store.set("a", b"x" * 40, 60)
    store.set("b", b"y" * 40, 60)
    assert store.get_many(["a"]) == [b"x" * 40]  # a is now the most recently used
    store.set("c", b"z" * 40, 60)
    assert store.get_many(["a", "b", "c"]) == [b"x" * 40, None, b"z" * 40]
    assert store.size == 80
    store.set("huge", b"h" * 101, 60)
    assert store.get_many(["huge"]) == [None]


def test_redis_cache_hits_across_apps(tmp_path, upstream, redis_prefix):
    upstream.post(URL, json=completion())
    one = make_app(tmp_path / "one", type="redis", namespace="shared")
    auth = {"Authorization": f"Bearer {keys.create_key(name='r')[1]}"}
    assert ask(one.test_client(), auth).headers["x-deltallm-cache"] == "miss"
    store = one.extensions["deltallm"].cache
    deadline = time.monotonic() + 5
    while store.pending.unfinished_tasks and time.monotonic() < deadline:  # the background write
        time.sleep(0.01)
    two = make_app(tmp_path / "two", type="redis", namespace="shared")  # another worker or instance
    auth = {"Authorization": f"Bearer {keys.create_key(name='r2')[1]}"}
    assert ask(two.test_client(), auth).headers["x-deltallm-cache"] == "hit"
    assert len(upstream.calls) == 1


@pytest.mark.parametrize("failure", ["refused", "silent"])
def test_redis_down_or_silent_is_a_fast_miss(tmp_path, upstream, redis_prefix, failure):
    upstream.post(URL, json=completion())
    app = make_app(tmp_path, type="redis")
    client, auth = app.test_client(), {"Authorization": f"Bearer {keys.create_key(name='d')[1]}"}
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    if failure == "silent":
        listener.listen(16)  # connects, never answers
    else:
        listener.close()
    store = app.extensions["deltallm"].cache
    # the store's own client settings, pointed at a Redis that is gone or never answers
    store.client = store.client.__class__(host="127.0.0.1", port=port,
                                          **{k: v for k, v in store.client.connection_pool.connection_kwargs.items()
                                             if k in ("socket_timeout", "socket_connect_timeout", "retry")})
    timings = []
    for _ in range(3):
        started = time.monotonic()
        resp = ask(client, auth)
        timings.append(time.monotonic() - started)
        assert resp.status_code == 200 and resp.headers["x-deltallm-cache"] == "miss"
    assert len(upstream.calls) == 3
    assert timings[0] < 1.0 and max(timings[1:]) < 0.3  # one bounded wait, then Redis is left alone
    listener.close()


def test_config_is_strict(tmp_path):
    with pytest.raises(ConfigError, match="cache"):
        create_app(base_config(tmp_path, cache={"type": "local", "ttl_seconds": 5}))
    with pytest.raises(ConfigError, match="redis_url"):
        create_app(base_config(tmp_path, cache={"type": "redis"}))
    with pytest.raises(ConfigError, match="cache"):
        create_app(base_config(tmp_path, cache={"type": "memcached"}))


def test_cache_off_leaves_requests_alone(tmp_path, upstream):
    upstream.post(URL, json=completion())
    app = create_app(base_config(tmp_path))
    models.migrate()
    auth = {"Authorization": f"Bearer {keys.create_key(name='off')[1]}"}
    assert app.extensions["deltallm"].cache is None
    resp = ask(app.test_client(), auth)
    assert resp.status_code == 200 and "x-deltallm-cache" not in resp.headers


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "say hi", "stream_options": {"include_usage": True}}),
    ("/v1/responses", {"input": "say hi"}),
])
def test_legacy_and_responses_streams_are_replayed(client, auth, upstream, path, body):
    upstream.post(URL, body=sse(chunk({"role": "assistant", "content": "Hel"}, usage=True),
                                chunk({"content": "lo"}, "stop", usage=True), usage_chunk()),
                  content_type="text/event-stream")
    body = {"model": "gpt-4o-mini", "temperature": 0, "stream": True, **body}
    first = client.post(path, json=body, headers=auth)
    assert first.data  # stored once the stream has been sent to the end
    second = client.post(path, json=body, headers=auth)
    assert (first.headers["x-deltallm-cache"], second.headers["x-deltallm-cache"]) == ("miss", "hit")
    assert second.data == first.data and len(upstream.calls) == 1
    assert b"Hel" in second.data and second.mimetype == "text/event-stream"


def test_migrate_adds_the_cache_hit_column_to_an_existing_usage_table(app):
    from deltallm.db import database
    with database.connection_context():
        database.execute_sql("ALTER TABLE deltallm_usage DROP COLUMN cache_hit")
        assert "cache_hit" not in {c.name for c in database.get_columns("deltallm_usage")}
    models.migrate()
    with database.connection_context():
        column = {c.name: c for c in database.get_columns("deltallm_usage")}["cache_hit"]
    assert column.null


def test_litellm_cache_settings_point_to_ours(tmp_path):
    config = base_config(tmp_path)
    config["litellm_settings"] = {"cache": True, "cache_params": {"type": "redis"}}
    config["router_settings"]["cache_responses"] = True
    warnings = dict(create_app(config).extensions["deltallm"].settings.ignored)
    assert warnings["litellm_settings.cache"].endswith("(use general_settings.cache)")
    assert warnings["litellm_settings.cache_params"].endswith("(use general_settings.cache)")
    assert warnings["router_settings.cache_responses"].endswith("(use general_settings.cache)")


def test_a_foreign_value_under_a_cache_key_is_a_miss(app, client, auth, upstream):
    upstream.post(URL, json=completion())
    store = app.extensions["deltallm"].cache
    ask(client, auth)
    for key in list(store.entries):
        store.set(key, b"not json {", 60)
    assert ask(client, auth).headers["x-deltallm-cache"] == "miss"
    for key in list(store.entries):
        store.set(key, b'{"other": 1}', 60)
    upstream.replace("POST", URL, body=sse(chunk({"role": "assistant", "content": "x"}), chunk({}, "stop")),
                     content_type="text/event-stream")
    assert ask(client, auth, stream=True).headers["x-deltallm-cache"] == "miss"
    assert len(upstream.calls) == 3
