"""The per-worker key cache stays bounded whatever keys clients present, and forgets within CACHE_TTL."""
import pytest

from deltallm import keys
from deltallm.errors import AuthenticationFailed


@pytest.fixture
def store(app):
    return app.extensions["deltallm"].keys


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: now[0])
    return now


def refused(store, key):
    with pytest.raises(AuthenticationFailed):
        store.authenticate(key)


def test_bad_keys_are_not_kept_whole(store, clock):
    for i in range(300):
        refused(store, f"sk-dl-{i:016x}-" + "s" * 400)
        refused(store, f"not-a-key-{i}")
    assert len(store.known) == 0
    # what is remembered about unknown keys is a short digest, not the key
    assert len(store.unknown) == 600 and all(len(k) == 16 for k in store.unknown.entries)


def test_absurd_keys_are_refused_before_any_lookup(store, monkeypatch):
    monkeypatch.setattr(keys.KeyStore, "lookup", lambda presented: pytest.fail("looked up"))
    refused(store, "sk-dl-" + "x" * 10_000)
    assert len(store.unknown) == 0


def test_caches_are_bounded(store, clock):
    store.unknown = keys.TtlCache(size=50)
    for i in range(500):
        refused(store, f"bad-{i}")
    assert len(store.unknown) == 50


def test_expired_entries_are_dropped(store, clock, api_key):
    for i in range(100):
        refused(store, f"bad-{i}")
    store.authenticate(api_key)
    clock[0] += keys.CACHE_TTL + 0.01
    refused(store, "one-more")
    # every entry older than CACHE_TTL went when the next one came in
    assert len(store.unknown) == 1


def test_unknown_keys_are_remembered_and_live_keys_cached(store, clock, api_key, monkeypatch):
    calls = []
    real = keys.KeyStore.lookup
    monkeypatch.setattr(keys.KeyStore, "lookup", staticmethod(lambda k: calls.append(k) or real(k)))
    for _ in range(3):
        refused(store, "sk-dl-0123456789abcdef-wrong")
        assert store.authenticate(api_key).key_id
    assert len(calls) == 2  # one database lookup each within CACHE_TTL
    clock[0] += keys.CACHE_TTL + 0.01
    store.authenticate(api_key)
    assert len(calls) == 3


def test_master_key_is_never_cached(store, master_key):
    assert store.authenticate(master_key).is_master
    assert len(store.known) == 0 and len(store.unknown) == 0


def test_a_long_master_key_still_works():
    long_master = "m" * 600
    store = keys.KeyStore(long_master)
    assert store.authenticate(long_master).is_master
    refused(store, "m" * 601)
