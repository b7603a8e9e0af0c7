"""/admin/models: the runtime registry (SPEC §7) on top of the config's deployments."""
import pytest

from deltallm import create_app, models
from tests.conftest import MASTER_KEY, UPSTREAM, base_config
from tests.helpers import completion

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def app(tmp_path):
    config = base_config(tmp_path, encryption_key="test-encryption-key")
    app = create_app(config)
    models.migrate()
    return app


def new_entry(**params):
    return {"model_name": "runtime", "deltallm_params": {"model": "openai/gpt-4o", "api_base": UPSTREAM,
                                                         "api_key": "sk-runtime-secret", **params}}


def test_list_shows_config_deployments_with_health_and_no_keys(client):
    data = client.get("/admin/models", headers=MASTER).get_json()["data"]
    first = data[0]
    assert first["model_name"] == "gpt-4o-mini" and first["model"] == "openai/gpt-4o-mini"
    assert first["source"] == "config" and first["api_base"] == UPSTREAM
    assert first["health"] == {"state": "healthy", "cooling_until": None, "recent_failures": 0, "latency_ms": None}
    assert "upstream-secret" not in str(data) and "api_key" not in str(data)


def test_added_deployments_serve_traffic_and_survive_a_restart(app, client, upstream, tmp_path, auth):
    created = client.post("/admin/models", json=new_entry(), headers=MASTER)
    assert created.status_code == 201, created.get_json()
    dep_id = created.get_json()["id"]
    assert created.get_json()["source"] == "db" and "sk-runtime-secret" not in created.get_data(as_text=True)
    upstream.post(f"{UPSTREAM}/chat/completions", json=completion("from runtime"))
    resp = client.post("/v1/chat/completions", headers=auth,
                       json={"model": "runtime", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200 and resp.headers["x-deltallm-deployment"] == dep_id
    assert upstream.calls[-1].request.headers["Authorization"] == "Bearer sk-runtime-secret"
    # stored encrypted: the plaintext key is nowhere in the database file
    assert b"sk-runtime-secret" not in (tmp_path / "test.db").read_bytes()
    # a second app on the same database (another worker, or a restart) sees it
    other = create_app(base_config(tmp_path, encryption_key="test-encryption-key")).test_client()
    ids = [d["id"] for d in other.get("/admin/models", headers=MASTER).get_json()["data"]]
    assert dep_id in ids
    assert "runtime" in [m["id"] for m in other.get("/v1/models", headers=MASTER).get_json()["data"]]


def test_deleting_a_runtime_deployment_and_refusing_config_ones(client):
    dep_id = client.post("/admin/models", json=new_entry(), headers=MASTER).get_json()["id"]
    assert client.delete(f"/admin/models/{dep_id}", headers=MASTER).get_json()["deleted"] is True
    assert client.delete(f"/admin/models/{dep_id}", headers=MASTER).status_code == 404
    config_id = client.get("/admin/models", headers=MASTER).get_json()["data"][0]["id"]
    refused = client.delete(f"/admin/models/{config_id}", headers=MASTER)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "conflict"
    resp = client.post("/v1/chat/completions", headers=MASTER,
                       json={"model": "runtime", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404


def test_bad_entries_and_virtual_keys_are_refused(client, auth):
    bad = client.post("/admin/models", json={"model_name": "x", "deltallm_params": {"model": "nosuch/m"}},
                      headers=MASTER)
    assert bad.status_code == 400 and "unknown provider prefix" in bad.get_json()["error"]["message"]
    assert client.post("/admin/models", json=new_entry(), headers=auth).status_code == 403
    assert client.get("/admin/models", headers=auth).status_code == 403


def test_credentials_are_refused_without_an_encryption_key(tmp_path):
    app = create_app(base_config(tmp_path))
    models.migrate()
    client = app.test_client()
    refused = client.post("/admin/models", json=new_entry(), headers=MASTER)
    assert refused.status_code == 400 and "encryption_key" in refused.get_json()["error"]["message"]
    keyless = client.post("/admin/models", json={"model_name": "local", "deltallm_params": {"model": "mock/m"}},
                          headers=MASTER)
    assert keyless.status_code == 201


def test_header_credentials_and_proxy_passwords_are_hidden_and_sealed(client, tmp_path):
    entry = new_entry(extra_headers={"Authorization": "Bearer entra-token-123456"},
                      proxy="http://user:proxy-pass-999@proxy.corp:3128")
    created = client.post("/admin/models", json=entry, headers=MASTER)
    assert created.status_code == 201
    listed = client.get("/admin/models", headers=MASTER).get_data(as_text=True)
    assert "entra-token-123456" not in listed and "proxy-pass-999" not in listed
    shown = created.get_json()["deltallm_params"]
    assert shown["extra_headers"] == {"Authorization": "***"} and shown["proxy"] == "http://user:***@proxy.corp:3128"
    assert b"entra-token-123456" not in (tmp_path / "test.db").read_bytes()
