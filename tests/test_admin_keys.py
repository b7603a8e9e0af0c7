"""Virtual keys through the admin API: create, list, read, update, revoke; model allowlists."""
import datetime

import pytest

from deltallm import keys
from deltallm.db import connection
from deltallm.models import ApiKey

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


def create(client, master, **fields):
    resp = client.post("/admin/keys", json=fields, headers=master)
    assert resp.status_code == 201, resp.data
    return resp.get_json()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_create_returns_plaintext_once_and_stores_only_a_salted_hash(client, master):
    created = create(client, master, name="ci", models=["mocky"], rpm_limit=10, metadata={"team": "a"},
                     expires_at="2099-01-01T00:00:00Z")
    assert created["key"].startswith("sk-")
    assert created["models"] == ["mocky"] and created["rpm_limit"] == 10
    assert created["expires_at"] == "2099-01-01T00:00:00Z"
    with connection():
        row = ApiKey.get_by_id(created["id"])
    assert created["key"] not in (row.key_hash, row.salt, row.key_hint)
    secret = created["key"][len(keys.KEY_PREFIX) + len(row.id) + 1:]
    assert row.key_hash == keys.hash_secret(row.salt, secret)
    assert row.key_hash != keys.hash_secret("other-salt", secret)
    read = client.get(f"/admin/keys/{created['id']}", headers=master).get_json()
    assert "key" not in read and read["spend"] == 0.0 and read["metadata"] == {"team": "a"}


def test_two_keys_with_same_secret_shape_have_different_salts(client, master):
    a, b = create(client, master), create(client, master)
    with connection():
        assert ApiKey.get_by_id(a["id"]).salt != ApiKey.get_by_id(b["id"]).salt


def test_list_is_paginated_newest_first(client, master):
    ids = [create(client, master, name=f"k{i}")["id"] for i in range(5)]
    page = client.get("/admin/keys?limit=2", headers=master).get_json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [k["id"] for k in page["data"]] == ids[::-1][:2]
    rest = client.get(f"/admin/keys?limit=10&after={page['last_id']}", headers=master).get_json()
    assert [k["id"] for k in rest["data"]] == ids[::-1][2:]
    assert rest["has_more"] is False
    assert all("key" not in k for k in page["data"] + rest["data"])


def test_update_changes_limits(client, master):
    key = create(client, master)
    resp = client.patch(f"/admin/keys/{key['id']}", json={"models": ["gpt-4o-mini"], "tpm_limit": 5},
                        headers=master)
    assert resp.status_code == 200
    assert resp.get_json()["models"] == ["gpt-4o-mini"] and resp.get_json()["tpm_limit"] == 5


@pytest.mark.parametrize("body,param", [
    ({"models": "mocky"}, "models"), ({"rpm_limit": -1}, "rpm_limit"), ({"expires_at": "tomorrow"}, "expires_at"),
    ({"budget_duration": "weekly"}, "budget_duration"), ({"colour": "red"}, "colour"),
])
def test_create_validation(client, master, body, param):
    resp = client.post("/admin/keys", json=body, headers=master)
    assert resp.status_code == 400
    assert resp.get_json()["error"]["param"] == param


def test_expires_at_accepts_unix_seconds(client, master):
    created = create(client, master, expires_at=4102444800)
    assert created["expires_at"] == "2100-01-01T00:00:00Z"


def test_revoked_key_is_rejected_within_a_second(client, master, monkeypatch):
    key = create(client, master)
    assert client.get("/v1/models", headers=bearer(key["key"])).status_code == 200
    assert client.delete(f"/admin/keys/{key['id']}", headers=master).get_json()["deleted"] is True
    # the per-worker cache may answer for at most CACHE_TTL seconds: jump past it
    clock = keys.time.monotonic() + keys.CACHE_TTL + 0.01
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock)
    resp = client.get("/v1/models", headers=bearer(key["key"]))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_api_key"
    assert client.get(f"/admin/keys/{key['id']}", headers=master).status_code == 404
    assert client.delete(f"/admin/keys/{key['id']}", headers=master).status_code == 404


def test_expired_key_is_401(client, master):
    past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).isoformat()
    key = create(client, master, expires_at=past)
    resp = client.post(CHAT, json={"model": "mocky", "messages": HELLO}, headers=bearer(key["key"]))
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["error"]["message"]


def test_tampered_secret_is_401(client, master):
    key = create(client, master)["key"]
    assert client.get("/v1/models", headers=bearer(key[:-2] + "zz")).status_code == 401


def test_models_allowlist_filters_and_gates(client, master):
    key = create(client, master, models=["mocky"])["key"]
    listed = client.get("/v1/models", headers=bearer(key)).get_json()
    assert [m["id"] for m in listed["data"]] == ["mocky"]
    ok = client.post(CHAT, json={"model": "mocky", "messages": HELLO}, headers=bearer(key))
    assert ok.status_code == 200
    denied = client.post(CHAT, json={"model": "gpt-4o-mini", "messages": HELLO}, headers=bearer(key))
    assert denied.status_code == 403
    assert denied.get_json()["error"]["type"] == "permission_denied"
    assert client.get("/v1/models/gpt-4o-mini", headers=bearer(key)).status_code == 404
    assert client.get("/v1/models/mocky", headers=bearer(key)).get_json()["id"] == "mocky"


def test_admin_needs_the_master_key(client, auth):
    resp = client.get("/admin/keys", headers=auth)
    assert resp.status_code == 403 and resp.get_json()["error"]["type"] == "permission_denied"
    assert client.get("/admin/keys").status_code == 401


def test_models_list_shape(client, master):
    data = client.get("/v1/models", headers=master).get_json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["gpt-4o-mini", "grouped", "mocky"]
    for model in data["data"]:
        assert model["object"] == "model" and model["owned_by"] == "deltallm"
        assert isinstance(model["created"], int)


def test_health_needs_no_key(client):
    assert client.get("/health/liveliness").get_json() == {"status": "healthy"}
    ready = client.get("/health/readiness")
    assert ready.status_code == 200 and ready.get_json()["database"] == "ok"
