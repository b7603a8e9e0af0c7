"""POST /mcp for clients: JSON-RPC dispatch, sessions, namespaced tools and per-key visibility."""
import pytest

from tests.mcp.conftest import MASTER

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def rpc(client, headers, message, session=None, version=None):
    extra = {"Mcp-Session-Id": session} if session else {}
    if version:
        extra["MCP-Protocol-Version"] = version
    return client.post("/mcp", json=message, headers={**headers, **extra})


def start(client, headers, version="2025-06-18"):
    resp = rpc(client, headers, dict(INIT, params=dict(INIT["params"], protocolVersion=version)))
    assert resp.status_code == 200, resp.get_data()
    session = resp.headers["Mcp-Session-Id"]
    assert rpc(client, headers, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
    return session


def call(client, headers, session, method, params=None, rid=2):
    body = rpc(client, headers, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}},
               session).get_json()
    assert body["id"] == rid
    return body


def test_initialize_ping_list_and_call(client):
    resp = rpc(client, MASTER, INIT)
    result = resp.get_json()["result"]
    assert result["protocolVersion"] == "2025-06-18" and result["serverInfo"]["name"] == "deltallm"
    assert "tools" in result["capabilities"]
    session = start(client, MASTER)
    assert call(client, MASTER, session, "ping")["result"] == {}
    tools = call(client, MASTER, session, "tools/list")["result"]["tools"]
    names = [t["name"] for t in tools]
    assert "docs.echo" in names and "wiki.search.docs" in names and len(names) == 12
    assert tools[0]["inputSchema"]["required"] == ["text"]  # as the upstream gave it
    result = call(client, MASTER, session, "tools/call", {"name": "wiki.echo", "arguments": {"text": "hi"}})
    assert result["result"]["content"][0]["text"] == "echo: hi"
    failed = call(client, MASTER, session, "tools/call", {"name": "docs.fail", "arguments": {}})
    assert failed["result"]["isError"] is True  # a tool error is a result, not a JSON-RPC error


def test_unknown_versions_are_negotiated_down(client):
    result = rpc(client, MASTER, dict(INIT, params=dict(INIT["params"], protocolVersion="2099-01-01"))).get_json()
    assert result["result"]["protocolVersion"] == "2025-11-25"


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, -32700),
    (b'{"id": 1, "method": "ping"}', 400, -32600),
])
def test_malformed_messages(client, body, status, code):
    resp = client.post("/mcp", data=body, headers={**MASTER, "Content-Type": "application/json"})
    assert resp.status_code == status and resp.get_json()["error"]["code"] == code


def test_method_and_param_errors(client):
    session = start(client, MASTER)
    assert call(client, MASTER, session, "resources/list")["error"]["code"] == -32601
    assert call(client, MASTER, session, "tools/call", {"name": 5})["error"]["code"] == -32602
    assert call(client, MASTER, session, "tools/call", {"name": "docs.echo", "arguments": [1]})["error"]["code"] \
        == -32602
    unknown = call(client, MASTER, session, "tools/call", {"name": "nope.echo"})["error"]
    assert unknown["code"] == -32602 and unknown["message"] == "Unknown tool: nope.echo"
    upstream = call(client, MASTER, session, "tools/call", {"name": "docs.missing"})["error"]
    assert upstream["code"] == -32602 and "docs" in upstream["message"]


def test_sessions_are_required_checked_and_ended(client, key_for):
    missing = rpc(client, MASTER, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert missing.status_code == 400 and missing.get_json()["id"] == 2
    assert rpc(client, MASTER, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, "forged.2025-06-18.x") \
        .status_code == 404
    session = start(client, MASTER)
    # a session belongs to the key that opened it
    other = key_for(["docs"])
    assert rpc(client, other, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session).status_code == 404
    mismatch = rpc(client, MASTER, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, session, version="2025-03-26")
    assert mismatch.status_code == 400
    assert client.delete("/mcp", headers={**MASTER, "Mcp-Session-Id": session}).status_code == 200
    assert rpc(client, MASTER, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session).status_code == 404
    assert client.get("/mcp", headers=MASTER).status_code == 405
    assert client.post("/mcp", json=INIT).status_code == 401


def test_batches_only_where_the_protocol_allows(client):
    old = start(client, MASTER, "2025-03-26")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
             {"jsonrpc": "2.0", "method": "notifications/progress"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "docs.add",
                                                                           "arguments": {"a": 1, "b": 2}}}]
    replies = rpc(client, MASTER, batch, old).get_json()
    assert [r["id"] for r in replies] == [1, 2] and replies[1]["result"]["structuredContent"] == {"sum": 3}
    new = start(client, MASTER)
    refused = rpc(client, MASTER, batch, new)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == -32600


def test_visibility_follows_the_key_allowlist(client, key_for):
    def names(headers):
        return [t["name"] for t in call(client, headers, start(client, headers), "tools/list")["result"]["tools"]]
    assert names(key_for([])) == []
    assert names(key_for(["docs"])) == [f"docs.{t}" for t in ("echo", "add", "fail", "big", "slow", "search.docs")]
    assert names(key_for(["wiki.echo", "wiki.search.docs"])) == ["wiki.echo", "wiki.search.docs"]
    headers = key_for(["wiki.echo"])
    session = start(client, headers)
    hidden = call(client, headers, session, "tools/call", {"name": "docs.echo", "arguments": {"text": "x"}})
    assert hidden["error"] == {"code": -32602, "message": "Unknown tool: docs.echo"}  # same as a missing server
    denied = call(client, headers, session, "tools/call", {"name": "wiki.add", "arguments": {"a": 1, "b": 1}})
    assert denied["error"]["code"] == -32003
    assert call(client, headers, session, "tools/call", {"name": "wiki.echo", "arguments": {"text": "x"}})["result"]


def test_upstream_failures_are_clear_errors(client, docs):
    session = start(client, MASTER)
    docs.garbage = True
    failed = call(client, MASTER, session, "tools/call", {"name": "docs.echo", "arguments": {"text": "x"}})["error"]
    assert failed["code"] == -32004 and "'docs'" in failed["message"]
    # a broken server does not hide the others' tools
    names = [t["name"] for t in call(client, MASTER, session, "tools/list")["result"]["tools"]]
    assert names and all(n.startswith("wiki.") for n in names)


def test_ended_sessions_are_remembered_within_a_bound(monkeypatch):
    from deltallm.mcp import sessions as module
    monkeypatch.setattr(module, "MAX_LOCAL", 4)
    store = module.Sessions("secret")
    ids = [store.create("2025-06-18", "key1") for _ in range(6)]
    assert store.version(ids[0], "key1") == "2025-06-18" and store.version(ids[0], "key2") is None
    for session_id in ids:
        store.end(session_id)
    assert len(store.ended) <= 4 and store.version(ids[-1], "key1") is None


def test_ended_sessions_are_shared_through_redis():
    import redis

    from deltallm.mcp.sessions import Sessions
    from tests.conftest import REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    one, other = Sessions("secret", client), Sessions("secret", client)
    session_id = one.create("2025-06-18", None)
    assert other.version(session_id, None) == "2025-06-18"  # another worker accepts it
    one.end(session_id)
    try:
        assert other.version(session_id, None) is None
    finally:
        client.delete(f"deltallm:mcp:ended:{session_id.split('.')[0]}")  # only the key this test made
