"""/admin/mcp/servers: the MCP server registry (SPEC §7) on top of the config's servers."""
from deltallm import create_app, models
from tests.conftest import base_config
from tests.fakes.mcp import FakeMcp
from tests.mcp.conftest import MASTER


def test_list_shows_config_servers_without_tokens(client):
    data = client.get("/admin/mcp/servers", headers=MASTER).get_json()["data"]
    assert [s["server_key"] for s in data] == ["docs", "wiki"]
    assert data[0]["description"] == "The docs" and data[0]["source"] == "config"
    assert data[1]["auth"] == {"type": "bearer"} and "wiki-token" not in str(data)


def test_added_servers_are_live_sealed_and_deletable(app, client, tmp_path):
    extra = FakeMcp(token="runtime-token-987654")
    body = {"server_key": "extra", "url": extra.url, "auth": {"type": "bearer", "token": "runtime-token-987654"},
            "description": "Runtime"}
    created = client.post("/admin/mcp/servers", json=body, headers=MASTER)
    assert created.status_code == 201, created.get_json()
    shown = created.get_json()
    assert shown["server_key"] == "extra" and shown["source"] == "db" and shown["auth"] == {"type": "bearer"}
    assert "runtime-token" not in created.get_data(as_text=True)
    assert b"runtime-token-987654" not in (tmp_path / "test.db").read_bytes()
    tools = client.get("/admin/mcp/servers/extra/tools", headers=MASTER).get_json()["data"]
    assert "echo" in [t["name"] for t in tools]  # the sealed token was opened and sent
    # the same database, another process (a restart, or another worker)
    other = create_app(app.extensions["deltallm"].settings).test_client()
    assert "extra" in [s["server_key"] for s in other.get("/admin/mcp/servers", headers=MASTER).get_json()["data"]]
    assert client.post("/admin/mcp/servers", json=body, headers=MASTER).status_code == 409
    assert client.delete("/admin/mcp/servers/extra", headers=MASTER).get_json()["deleted"] is True
    assert client.get("/admin/mcp/servers/extra", headers=MASTER).status_code == 404
    assert client.delete("/admin/mcp/servers/extra", headers=MASTER).status_code == 404
    extra.close()


def test_config_servers_cannot_be_deleted(client):
    refused = client.delete("/admin/mcp/servers/docs", headers=MASTER)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "conflict"


def test_bad_bodies_name_the_field(client, auth):
    cases = [({"url": "http://x/mcp"}, "server_key"),
             ({"server_key": "a.b", "url": "http://x/mcp"}, "server_key"),
             ({"server_key": "x", "url": "ftp://x"}, "url"),
             ({"server_key": "x", "url": "http://x/mcp", "auth": {"type": "bearer"}}, "auth.token"),
             ({"server_key": "x", "url": "http://x/mcp", "auth": {"type": "magic"}}, "auth.type"),
             ({"server_key": "x", "url": "http://x/mcp", "urll": 1}, "urll")]
    for body, param in cases:
        refused = client.post("/admin/mcp/servers", json=body, headers=MASTER)
        assert refused.status_code == 400, body
        assert refused.get_json()["error"]["param"] == param, (body, refused.get_json())
    assert client.get("/admin/mcp/servers", headers=auth).status_code == 403


def test_tokens_are_refused_without_an_encryption_key(tmp_path):
    app = create_app(base_config(tmp_path))
    models.migrate()
    client = app.test_client()
    body = {"server_key": "x", "url": "http://127.0.0.1:9/mcp", "auth": {"type": "headers",
                                                                        "headers": {"X-Api-Key": "k"}}}
    refused = client.post("/admin/mcp/servers", json=body, headers=MASTER)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "encryption_key_missing"
    assert client.post("/admin/mcp/servers", json={"server_key": "open", "url": "http://127.0.0.1:9/mcp"},
                       headers=MASTER).status_code == 201


def test_key_allowlists_must_name_known_servers(client):
    refused = client.post("/admin/keys", json={"mcp_servers": ["docs", "nope.tool"]}, headers=MASTER)
    assert refused.status_code == 400 and refused.get_json()["error"]["param"] == "mcp_servers[1]"
    assert client.post("/admin/keys", json={"mcp_servers": ["docs", "wiki.echo"]}, headers=MASTER).status_code == 201
