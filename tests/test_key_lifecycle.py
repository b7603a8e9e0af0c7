"""Key lifecycle through the admin API: per-model limits, `duration`, allowlists that must name served
models, regenerate, and a key reading its own limits and spend at /v1/key/info."""
import datetime as dt

import pytest

from deltallm import create_app, db, keys, models
from deltallm.governance.usage import make_record
from deltallm.models import ApiKey, Usage, utcnow
from tests.conftest import base_config
from tests.test_admin_keys import bearer, create

CHAT = "/v1/chat/completions"
HELLO = {"model": "mocky", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def config(tmp_path):
    config = base_config(tmp_path)
    config["router_settings"]["model_group_alias"] = {"fast": "mocky", "dangling": "nowhere"}
    return config


def error_of(resp, status):
    assert resp.status_code == status, resp.data
    return resp.get_json()["error"]


def when(text):
    return dt.datetime.fromisoformat(text.rstrip("Z"))


def past_the_key_cache(monkeypatch):
    clock = keys.time.monotonic() + keys.CACHE_TTL + 0.01
    monkeypatch.setattr(keys.time, "monotonic", lambda: clock)


# -- per-model limits ----------------------------------------------------------------------------------
def test_model_limit_maps_are_stored_returned_and_cleared(client, master):
    key = create(client, master, model_rpm_limit={"mocky": 5, "fast": 0}, model_tpm_limit={"gpt-4o-mini": 1000})
    assert key["model_rpm_limit"] == {"mocky": 5, "fast": 0}
    assert key["model_tpm_limit"] == {"gpt-4o-mini": 1000}
    read = client.get(f"/admin/keys/{key['id']}", headers=master).get_json()
    assert (read["model_rpm_limit"], read["model_tpm_limit"]) == (key["model_rpm_limit"], key["model_tpm_limit"])
    patched = client.patch(f"/admin/keys/{key['id']}", json={"model_rpm_limit": {"grouped": 7},
                                                            "model_tpm_limit": None}, headers=master).get_json()
    assert patched["model_rpm_limit"] == {"grouped": 7} and patched["model_tpm_limit"] == {}
    plain = create(client, master)
    assert plain["model_rpm_limit"] == {} and plain["model_tpm_limit"] == {}


def test_a_model_rpm_limit_is_enforced_on_that_model_only(client, master):
    key = create(client, master, model_rpm_limit={"mocky": 1})["key"]
    assert client.post(CHAT, json=HELLO, headers=bearer(key)).status_code == 200
    refused = client.post(CHAT, json=HELLO, headers=bearer(key))
    assert error_of(refused, 429)["code"] == "rate_limit_exceeded"
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200


@pytest.mark.parametrize("fields,param", [
    ({"model_rpm_limit": {"mocky": -1}}, "model_rpm_limit.mocky"),
    ({"model_rpm_limit": {"mocky": 2 ** 31}}, "model_rpm_limit.mocky"),
    ({"model_rpm_limit": {"mocky": "5"}}, "model_rpm_limit.mocky"),
    ({"model_rpm_limit": {"mocky": True}}, "model_rpm_limit.mocky"),
    ({"model_rpm_limit": {"mocky": 1.5}}, "model_rpm_limit.mocky"),
    ({"model_tpm_limit": {"mocky": None}}, "model_tpm_limit.mocky"),
    ({"model_tpm_limit": ["mocky"]}, "model_tpm_limit"),
    ({"model_tpm_limit": {"": 1}}, "model_tpm_limit."),
    ({"model_tpm_limit": {"a\x00": 1}}, "model_tpm_limit.a\x00"),
    ({"model_rpm_limit": {"no-such-model": 1}}, "model_rpm_limit.no-such-model"),
    ({"model_tpm_limit": {"dangling": 1}}, "model_tpm_limit.dangling"),
    ({"models": ["mocky", "no-such-model"]}, "models[1]"),
    ({"models": ["dangling"]}, "models[0]"),
    ({"duration": "0d"}, "duration"),
    ({"duration": "weekly"}, "duration"),
    ({"duration": "1201mo"}, "duration"),
    ({"duration": None}, "duration"),
    ({"duration": "30d", "expires_at": "2099-01-01T00:00:00Z"}, "duration"),
    ({"budget_duration": "0s"}, "budget_duration"),
    ({"budget_duration": "999999mo"}, "budget_duration"),
    ({"budget_duration": "876601h"}, "budget_duration"),
])
def test_bad_lifecycle_fields_are_400_naming_the_field(client, master, fields, param):
    err = error_of(client.post("/admin/keys", json=fields, headers=master), 400)
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    key_id = create(client, master)["id"]
    assert error_of(client.patch(f"/admin/keys/{key_id}", json=fields, headers=master), 400)["param"] == param


# -- allowlists name served models -----------------------------------------------------------------------
def test_allowlists_accept_groups_aliases_and_runtime_models(client, master):
    key = create(client, master, models=["mocky", "fast", "grouped"], model_tpm_limit={"fast": 10})
    assert key["models"] == ["mocky", "fast", "grouped"]
    # a group added at run time counts at once
    assert error_of(client.patch(f"/admin/keys/{key['id']}", json={"models": ["brand-new"]}, headers=master),
                    400)["param"] == "models[0]"
    added = client.post("/admin/models", json={"model_name": "brand-new", "deltallm_params": {"model": "mock/x"}},
                        headers=master)
    assert added.status_code == 201, added.data
    patched = client.patch(f"/admin/keys/{key['id']}", json={"models": ["brand-new"]}, headers=master)
    assert patched.status_code == 200 and patched.get_json()["models"] == ["brand-new"]
    assert client.post(CHAT, json=dict(HELLO, model="brand-new"), headers=bearer(key["key"])).status_code == 200
    # other fields of a key whose list names a model since removed can still change
    assert client.delete(f"/admin/models/{added.get_json()['id']}", headers=master).status_code == 200
    assert client.patch(f"/admin/keys/{key['id']}", json={"rpm_limit": 3}, headers=master).status_code == 200


# -- duration -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("duration,delta", [("30d", dt.timedelta(days=30)), ("12h", dt.timedelta(hours=12)),
                                            ("90s", dt.timedelta(seconds=90))])
def test_duration_sets_expires_at_from_now(client, master, duration, delta):
    before = utcnow()
    key = create(client, master, duration=duration)
    expires = when(key["expires_at"])
    assert before + delta - dt.timedelta(seconds=1) <= expires <= utcnow() + delta
    assert client.get(f"/admin/keys/{key['id']}", headers=master).get_json()["expires_at"] == key["expires_at"]
    assert client.get("/v1/models", headers=bearer(key["key"])).status_code == 200


def test_create_answers_with_the_first_budget_period(client, master):
    key = create(client, master, max_budget=1, budget_duration="1d")
    assert key["spend"] == 0.0 and key["key"]
    assert when(key["budget_reset_at"]) == when(key["created_at"]) + dt.timedelta(days=1)
    assert create(client, master, max_budget=1)["budget_reset_at"] is None


def test_duration_in_months_and_on_patch(client, master):
    key = create(client, master, duration="1mo")
    assert 27 <= (when(key["expires_at"]) - utcnow()).days <= 31
    patched = client.patch(f"/admin/keys/{key['id']}", json={"duration": "1h"}, headers=master).get_json()
    assert dt.timedelta(minutes=59) <= when(patched["expires_at"]) - utcnow() <= dt.timedelta(hours=1)


def test_a_key_past_its_duration_is_401(client, master, monkeypatch):
    key = create(client, master, duration="1s")
    with db.connection():     # a second later, without sleeping: the key has expired
        ApiKey.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(ApiKey.id == key["id"]).execute()
    past_the_key_cache(monkeypatch)
    assert error_of(client.get("/v1/models", headers=bearer(key["key"])), 401)["code"] == "invalid_api_key"


# -- regenerate -----------------------------------------------------------------------------------------
def test_regenerate_gives_a_new_secret_and_keeps_id_limits_and_spend(client, master, monkeypatch):
    key = create(client, master, name="svc", models=["mocky"], rpm_limit=50, max_budget=5, metadata={"t": 1})
    old = key["key"]
    assert client.post(CHAT, json=HELLO, headers=bearer(old)).status_code == 200
    with db.connection():
        Usage.insert(make_record(key_id=key["id"], model="mocky", deployment="d", endpoint=CHAT, status=200,
                                 spend=0.25)).execute()
    before = client.get(f"/admin/keys/{key['id']}", headers=master).get_json()
    resp = client.post(f"/admin/keys/{key['id']}/regenerate", headers=master)
    assert resp.status_code == 200
    fresh = resp.get_json()
    new = fresh["key"]
    assert new != old and new.startswith(keys.KEY_PREFIX + key["id"] + "-")
    assert fresh["id"] == key["id"] and fresh["key_hint"] != key["key_hint"] and fresh["key_hint"] == \
        f"{new[:10]}...{new[-4:]}"
    same = ("name", "models", "rpm_limit", "max_budget", "metadata", "spend", "created_at", "budget_reset_at")
    assert {f: fresh[f] for f in same} == {f: before[f] for f in same} and fresh["spend"] >= 0.25
    with db.connection():
        row = ApiKey.get_by_id(key["id"])
    assert new not in (row.key_hash, row.salt, row.key_hint)
    # the new secret works at once; the old one once the per-worker cache (1 s) has let go of it
    assert client.post(CHAT, json=HELLO, headers=bearer(new)).status_code == 200
    past_the_key_cache(monkeypatch)
    assert error_of(client.get("/v1/models", headers=bearer(old)), 401)["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers=bearer(new)).status_code == 200
    assert "key" not in client.get(f"/admin/keys/{key['id']}", headers=master).get_json()


def test_regenerate_unknown_or_revoked_key_is_404_and_needs_the_master_key(client, master):
    key = create(client, master)
    assert error_of(client.post(f"/admin/keys/{key['id']}/regenerate", headers=bearer(key["key"])),
                    403)["type"] == "permission_denied"
    assert client.delete(f"/admin/keys/{key['id']}", headers=master).status_code == 200
    for key_id in (key["id"], "nope", "a%00b"):
        assert error_of(client.post(f"/admin/keys/{key_id}/regenerate", headers=master), 404)["code"] == "not_found"


# -- /v1/key/info ---------------------------------------------------------------------------------------
INFO_FIELDS = {"id", "name", "models", "rpm_limit", "tpm_limit", "max_parallel_requests", "model_rpm_limit",
               "model_tpm_limit", "max_budget", "budget_duration", "spend", "budget_reset_at", "expires_at"}


@pytest.mark.parametrize("path", ["/v1/key/info", "/key/info"])
def test_a_key_reads_its_own_limits_and_spend(client, master, path):
    key = create(client, master, name="mine", models=["mocky"], rpm_limit=100, tpm_limit=10_000,
                 model_rpm_limit={"mocky": 50}, max_budget=2.5, budget_duration="30d", duration="7d")
    other = create(client, master)
    with db.connection():
        Usage.insert_many([make_record(key_id=k, model="mocky", deployment="d", endpoint=CHAT, status=200,
                                       spend=s) for k, s in ((key["id"], 0.5), (other["id"], 9.0))]).execute()
    resp = client.get(path, headers=bearer(key["key"]))
    assert resp.status_code == 200
    info = resp.get_json()
    assert set(info) >= INFO_FIELDS
    assert (info["id"], info["name"], info["models"], info["rpm_limit"], info["model_rpm_limit"]) == \
        (key["id"], "mine", ["mocky"], 100, {"mocky": 50})
    assert (info["max_budget"], info["budget_duration"], info["spend"]) == (2.5, "30d", 0.5)
    assert info["expires_at"] == key["expires_at"]
    assert 29 <= (when(info["budget_reset_at"]) - utcnow()).days <= 30
    text = resp.get_data(as_text=True)
    with db.connection():
        row = ApiKey.get_by_id(key["id"])
    assert key["key"] not in text and row.key_hash not in text and row.salt not in text and "key" not in info
    # a change made through the admin API shows at once
    client.patch(f"/admin/keys/{key['id']}", json={"rpm_limit": 7}, headers=master)
    assert client.get(path, headers=bearer(key["key"])).get_json()["rpm_limit"] == 7


def test_key_info_for_the_master_key_and_without_a_key(client, master, monkeypatch):
    info = client.get("/v1/key/info", headers=master).get_json()
    assert info["object"] == "master_key" and info["master_key"] is True
    assert error_of(client.get("/v1/key/info"), 401)["code"] == "invalid_api_key"
    key = create(client, master)
    assert client.delete(f"/admin/keys/{key['id']}", headers=master).status_code == 200
    past_the_key_cache(monkeypatch)
    assert error_of(client.get("/key/info", headers=bearer(key["key"])), 401)["code"] == "invalid_api_key"
    assert error_of(client.post("/v1/key/info", headers=master), 405)["code"] == "method_not_allowed"


def test_key_info_is_not_rate_limited_or_recorded(app, client, master):
    key = create(client, master, rpm_limit=1)["key"]
    for _ in range(3):
        assert client.get("/v1/key/info", headers=bearer(key)).status_code == 200
    assert app.extensions["deltallm"].writer.drain()
    with db.connection():
        assert Usage.select().count() == 0


def test_key_info_on_postgres(tmp_path, pg_url, master):
    app = create_app(base_config(tmp_path, database_url=pg_url))
    with db.connection():
        db.database.drop_tables(models.MODELS, safe=True)  # our own throw-away database
    models.migrate()
    try:
        client = app.test_client()
        key = create(client, master, max_budget=1, budget_duration="1h", model_tpm_limit={"mocky": 9})
        assert client.post(CHAT, json=HELLO, headers=bearer(key["key"])).status_code == 200
        assert app.extensions["deltallm"].writer.drain()
        info = client.get("/v1/key/info", headers=bearer(key["key"])).get_json()
        assert info["model_tpm_limit"] == {"mocky": 9} and info["budget_reset_at"] is not None
        assert info["spend"] == client.get(f"/admin/spend?key_id={key['id']}", headers=master).get_json()[
            "total"]["spend"]
    finally:
        app.extensions["deltallm"].writer.close()
        db.database.close_all()
