"""The MCP client against a fake MCP server: JSON and SSE replies, sessions, pagination, faults."""
import socket
import time

import pytest

from deltallm.mcp.client import McpClient
from deltallm.mcp.errors import McpServerError, McpTimeout, RpcError
from tests.fakes.mcp import TOOLS, FakeMcp


@pytest.fixture(params=["json", "sse"])
def server(request):
    fake = FakeMcp(reply=request.param)
    yield fake
    fake.close()


def test_initialize_list_and_call(server):
    client = McpClient("docs", server.url)
    tools = client.list_tools()
    assert [t["name"] for t in tools] == [t["name"] for t in TOOLS]
    result = client.call_tool("echo", {"text": "hi"})
    assert result["content"] == [{"type": "text", "text": "echo: hi"}]
    methods = [r["method"] for r in server.requests]
    assert methods == ["initialize", "notifications/initialized", "tools/list", "tools/call"]
    # the session and the negotiated version ride on every request after initialize
    session = server.requests[1]["session"]
    assert session and all(r["session"] == session for r in server.requests[1:])
    assert all(r["headers"]["mcp-protocol-version"] == "2025-11-25" for r in server.requests[1:])
    assert "text/event-stream" in server.requests[0]["headers"]["accept"]


def test_pagination_follows_cursors(server):
    server.page_size = 2
    client = McpClient("docs", server.url)
    assert [t["name"] for t in client.list_tools()] == [t["name"] for t in TOOLS]
    assert [r["params"] for r in server.requests if r["method"] == "tools/list"] == \
        [{}, {"cursor": "2"}, {"cursor": "4"}]


def test_expired_session_is_initialized_again(server):
    client = McpClient("docs", server.url)
    client.list_tools()
    first = client.session_id
    server.expire()
    assert client.call_tool("add", {"a": 1, "b": 2})["structuredContent"] == {"sum": 3}
    assert client.session_id != first
    assert [r["method"] for r in server.requests].count("initialize") == 2


def test_json_rpc_errors_are_raised_as_such(server):
    client = McpClient("docs", server.url)
    with pytest.raises(RpcError) as info:
        client.call_tool("nope", {})
    assert info.value.code == -32602 and "Unknown tool" in info.value.message


def test_tool_errors_are_results(server):
    result = McpClient("docs", server.url).call_tool("fail", {})
    assert result["isError"] is True


def test_list_changed_notification_is_reported():
    fake = FakeMcp(reply="sse")
    seen = []
    client = McpClient("docs", fake.url, on_list_changed=lambda: seen.append(1))
    client.list_tools()
    fake.list_changed = True
    client.call_tool("echo", {"text": "x"})
    assert seen == [1]
    fake.close()


def test_bearer_token_is_sent():
    fake = FakeMcp(token="s3cret")
    with pytest.raises(McpServerError, match="refused the gateway's credentials"):
        McpClient("docs", fake.url).list_tools()
    client = McpClient("docs", fake.url, headers={"Authorization": "Bearer s3cret"})
    assert client.list_tools()
    fake.close()


def test_down_server_is_a_clear_502():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(McpServerError) as info:
        McpClient("docs", f"http://127.0.0.1:{port}/mcp").list_tools()
    assert info.value.status == 502 and "'docs'" in info.value.message and "refused" in info.value.message


def test_slow_server_times_out(server):
    client = McpClient("docs", server.url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(McpTimeout) as info:
        client.call_tool("slow", {"seconds": 3})
    assert time.monotonic() - started < 2
    assert info.value.status == 504 and "'docs'" in info.value.message


def test_garbage_is_a_clear_502(server):
    server.garbage = True
    with pytest.raises(McpServerError, match="invalid JSON|not JSON"):
        McpClient("docs", server.url).list_tools()


def test_unsupported_protocol_version_is_refused(server, monkeypatch):
    monkeypatch.setattr("tests.fakes.mcp.VERSIONS", ("2099-01-01",))
    with pytest.raises(McpServerError, match="protocol version '2099-01-01'"):
        McpClient("docs", server.url).list_tools()
