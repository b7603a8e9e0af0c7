"""The trimmed upstream adapter: remembered routes, lean responses, the idle-connection check, and
the upstream request's headers."""
import socket
import threading

import pytest
import responses
from requests.models import PreparedRequest

from deltallm.providers.transport import CheckedConnection, HeaderDict, Transport, UpstreamResponse


def prepared(url, body=b"{}"):
    request = PreparedRequest()
    request.method, request.url, request.body = "POST", url, body
    request.headers = HeaderDict({"Content-Type": "application/json", "Content-Length": str(len(body))})
    return request


class KeepAliveServer:
    """An HTTP/1.1 server that answers each request with a small JSON body and closes a connection
    after `per_connection` answers; counts the connections it accepted."""

    def __init__(self, per_connection=1):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.per_connection, self.accepted = per_connection, 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        with conn:
            for _ in range(self.per_connection):
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, body = data.partition(b"\r\n\r\n")
                length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")][0])
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: a=b\r\n"
                             b"Content-Length: 2\r\n\r\n{}")

    def close(self):
        self.sock.close()


@pytest.fixture
def server():
    srv = KeepAliveServer(per_connection=1)
    yield srv
    srv.close()


def test_a_pooled_connection_the_upstream_closed_is_replaced_not_reused(server):
    transport = Transport()
    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
    first = transport.send(prepared(url), timeout=(5, 5))
    assert first.status_code == 200 and first.content == b"{}"
    pool = transport.get_connection_with_tls_context(prepared(url), True)
    idle = [conn for conn in list(pool.pool.queue) if conn is not None and conn.sock is not None]
    assert len(idle) == 1 and type(idle[0]) is CheckedConnection
    # the server closed it after one answer: the native check sees that, so the pool reconnects
    for _ in range(100):
        if not idle[0].is_connected:
            break
        threading.Event().wait(0.01)
    assert not idle[0].is_connected
    second = transport.send(prepared(url), timeout=(5, 5))
    assert second.status_code == 200 and second.content == b"{}"
    assert server.accepted == 2


def test_a_live_idle_connection_is_reused():
    srv = KeepAliveServer(per_connection=5)
    try:
        transport = Transport()
        url = f"http://127.0.0.1:{srv.port}/v1/embeddings"
        for _ in range(3):
            assert transport.send(prepared(url), timeout=(5, 5)).content == b"{}"
        assert srv.accepted == 1
    finally:
        srv.close()


def test_the_idle_check_on_a_socket_pair():
    left, right = socket.socketpair()
    conn = CheckedConnection("127.0.0.1", 1)
    conn.sock = left
    assert conn.is_connected
    right.close()
    assert not conn.is_connected
    conn.sock = None
    assert not conn.is_connected
    left.close()


def test_routes_are_remembered_per_url_and_renewed_when_urllib3_closed_the_pool():
    transport = Transport()
    url = "http://127.0.0.1:9/v1/chat/completions"
    pool = transport.get_connection_with_tls_context(prepared(url), True)
    assert transport.get_connection_with_tls_context(prepared(url), True) is pool
    request = prepared(url + "?x=1")
    other = transport.get_connection_with_tls_context(request, True)
    assert transport.request_url(request, None) == "/v1/chat/completions?x=1"
    assert other is pool  # the same host shares urllib3's pool
    transport.poolmanager.clear()  # as when urllib3 evicts a pool: forgotten (and closed, by urllib3 1.26)
    pool.close()
    renewed = transport.get_connection_with_tls_context(prepared(url), True)
    assert renewed is not pool and renewed.pool is not None


def test_a_plain_http_proxy_gets_the_absolute_url():
    transport = Transport()
    request = prepared("http://upstream.test:8000/v1/chat/completions")
    proxies = {"http": "http://proxy.test:3128"}
    transport.get_connection_with_tls_context(request, True, proxies)
    assert transport.request_url(request, proxies) == "http://upstream.test:8000/v1/chat/completions"


def test_the_route_memory_is_bounded():
    transport = Transport()
    for i in range(Transport.MAX_REMEMBERED + 10):
        transport.get_connection_with_tls_context(prepared(f"http://127.0.0.1:9/v1/x{i}"), True)
    assert len(transport._routes) <= Transport.MAX_REMEMBERED


def test_responses_have_headers_in_any_case_and_a_cookie_jar_only_on_demand(server):
    response = Transport().send(prepared(f"http://127.0.0.1:{server.port}/v1/x"), timeout=(5, 5))
    assert isinstance(response, UpstreamResponse)
    assert response.headers.get("content-type") == response.headers["Content-Type"] == "application/json"
    assert response.encoding == "utf-8" and response.json() == {}
    assert response._cookies is None
    assert len(response.cookies) == 0  # made when asked for; upstream cookies are never used
    response.cookies = None
    assert response.cookies is not None


def test_header_dict_finds_names_in_any_case_and_copies_as_a_plain_dict():
    headers = HeaderDict({"Content-Type": "application/json", "x-api-key": "k"})
    assert headers["content-type"] == headers.get("CONTENT-TYPE") == "application/json"
    assert "X-Api-Key" in headers and "x-api-key" in headers and "other" not in headers
    assert headers.get("other") is None and headers.get("other", "d") == "d"
    with pytest.raises(KeyError):
        headers["other"]
    copy = headers.copy()
    assert type(copy) is dict and copy == {"Content-Type": "application/json", "x-api-key": "k"}
    assert HeaderDict({"A": ""}).get("a", "d") == ""


@pytest.mark.parametrize("extra, agent", [({}, "deltallm/0.1"), ({"user-agent": "mine/2"}, "mine/2"),
                                          ({"User-Agent": "mine/3"}, "mine/3")])
@responses.activate
def test_exactly_one_user_agent_reaches_the_upstream(extra, agent):
    from deltallm.providers.base import Call
    from deltallm.router.deployment import Deployment
    responses.add(responses.POST, "http://up.test/v1/chat/completions", json={
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})
    dep = Deployment("m", {"model": "openai/m", "api_base": "http://up.test/v1", "api_key": "k",
                           "extra_headers": extra})
    dep.adapter.chat(Call("req_1"), {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    sent = responses.calls[0].request.headers
    names = [name for name in sent if name.lower() == "user-agent"]
    assert len(names) == 1 and sent[names[0]] == agent and sent["user-agent"] == agent
