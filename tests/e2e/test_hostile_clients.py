"""Hostile and broken clients against real gunicorn/gevent workers: every answer is the JSON envelope,
no client can make a worker hold memory or a connection without bound."""
import json
import os
import socket
import threading
import time
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.conftest import MASTER, gateway_config, running_gateway

BODY_LIMIT_MB = 1
CHAT = {"model": "mocky", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    text = gateway_config(upstream_url, tmp / "hostile.db")
    text += f"  max_request_body_mb: {BODY_LIMIT_MB}\n  request_body_timeout: 1\n"
    with running_gateway(text, tmp) as url:
        yield url


def address(url):
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


def exchange(url, data, *, drip=None, timeout=30):
    """Send raw bytes (then `drip` byte by byte, slowly), return (status, headers, body) of the answer."""
    with socket.create_connection(address(url), timeout=timeout) as sock:
        sock.sendall(data)
        for byte in drip or b"":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # the server gave up on us: read its answer
            time.sleep(0.5)
        return read_response(sock)


def read_response(sock):
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", -1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def assert_envelope(status, headers, body, expected_status):
    assert status == expected_status, body[:500]
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def request_bytes(method, path, headers=(), body=b""):
    head = [f"{method} {path} HTTP/1.1", "Host: gateway.test"] + list(headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- item 8: malformed HTTP is answered with the envelope -----------------------------------------

def test_uri_too_long_is_414_envelope(gateway):
    answer = exchange(gateway, request_bytes("GET", "/v1/models?" + "a" * 10_000))
    assert assert_envelope(*answer, 414)["type"] == "invalid_request_error"


@pytest.mark.parametrize("headers", [
    [f"X-Filler-{i}: v" for i in range(200)],   # too many header fields
    ["X-Big: " + "b" * 20_000],                 # one field over the size limit
], ids=["count", "size"])
def test_oversized_headers_are_431_envelope(gateway, headers):
    answer = exchange(gateway, request_bytes("GET", "/v1/models", headers))
    assert assert_envelope(*answer, 431)["type"] == "invalid_request_error"


@pytest.mark.parametrize("data", [b"NONSENSE\r\n\r\n", b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n",
                                  b"GET /v1/models HTTP/1.1\r\nBad Header Name: x\r\n\r\n"],
                         ids=["request-line", "version", "header"])
def test_bad_request_is_400_envelope(gateway, data):
    assert assert_envelope(*exchange(gateway, data), 400)["type"] == "invalid_request_error"


def test_invalid_chunk_size_is_400_envelope_not_500(gateway):
    data = request_bytes("POST", "/v1/chat/completions",
                         [f"Authorization: Bearer {MASTER}", "Content-Type: application/json",
                          "Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n")
    status, headers, body = exchange(gateway, data)
    assert assert_envelope(status, headers, body, 400)["type"] == "invalid_request_error"
    assert headers.get("connection") == "close"


@pytest.mark.parametrize("path", ["//v1/models", "/v1//models", "/v1/models//"])
def test_double_slash_paths_are_404_envelope_without_redirect(gateway, path):
    resp = requests.get(gateway + path, headers={"Authorization": f"Bearer {MASTER}"},
                        allow_redirects=False, timeout=10)
    assert resp.status_code == 404 and "location" not in resp.headers
    assert resp.json()["error"]["code"] == "not_found" and f"GET {path}." in resp.json()["error"]["message"]


# -- item 4: bodies over max_request_body_mb are 413, whatever the transfer encoding --------------

def padded_chat(total):
    """A chat body whose first `BODY_LIMIT_MB` MiB are themselves valid JSON (trailing spaces)."""
    head = json.dumps(CHAT).encode()
    return head + b" " * (total - len(head))


def chunks(data, size=65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_over_the_limit_is_413(gateway, chunked):
    body = padded_chat(2 * BODY_LIMIT_MB * 1024 * 1024)
    resp = requests.post(gateway + "/v1/chat/completions", data=chunks(body) if chunked else body,
                         headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
                         timeout=60)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"


def test_chunked_body_under_the_limit_is_served(gateway):
    body = padded_chat(BODY_LIMIT_MB * 1024 * 1024 - 10)
    resp = requests.post(gateway + "/v1/chat/completions", data=chunks(body),
                         headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
                         timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["object"] == "chat.completion"


# -- item 5: a body that arrives too slowly is 408 -------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_slow_json_body_is_408(gateway, chunked):
    body = json.dumps(CHAT).encode()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    if chunked:
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    head = request_bytes("POST", "/v1/chat/completions",
                         [f"Authorization: Bearer {MASTER}", "Content-Type: application/json", framing])
    started = time.monotonic()
    # 0.5 s a byte: the whole body would take far longer than the 1 s bound
    status, headers, payload = exchange(gateway, head + body[:5], drip=body[5:40])
    error = assert_envelope(status, headers, payload, 408)
    assert error["type"] == "invalid_request_error" and error["code"] == "request_timeout"
    assert headers.get("connection") == "close"
    assert time.monotonic() - started < 15


def test_slow_multipart_upload_is_408(gateway):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n" + "x" * 100 + f"\r\n--{boundary}--\r\n").encode()
    head = request_bytes("POST", "/v1/audio/transcriptions",
                         [f"Authorization: Bearer {MASTER}", f"Content-Length: {len(body)}",
                          f"Content-Type: multipart/form-data; boundary={boundary}"])
    status, headers, payload = exchange(gateway, head + body[:20], drip=body[20:60])
    assert assert_envelope(status, headers, payload, 408)["code"] == "request_timeout"


# -- item 1: a flood of distinct bad keys does not grow a worker ----------------------------------

def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


def worker_pids(url):
    port = str(address(url)[1])
    for pid in children(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if "gunicorn" in cmdline and port in cmdline:
            return children(pid)
    raise AssertionError("gunicorn master not found")


def rss_kb(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total


def flood(url, tokens, statuses):
    """Pipelined GETs with the given bearer tokens, in batches of 50; collects the answers' statuses."""
    with socket.create_connection(address(url), timeout=60) as sock:
        pending = b""
        for start in range(0, len(tokens), 50):
            batch = tokens[start:start + 50]
            sock.sendall(b"".join(request_bytes("GET", "/v1/models", [f"Authorization: Bearer {t}"])
                                  for t in batch))
            for _ in batch:
                status, pending = read_pipelined(sock, pending)
                statuses.append(status)


def read_pipelined(sock, raw):
    """(status, bytes left over) of the next response on a connection with pipelined requests."""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), rest[length:]


def test_flood_of_distinct_bad_keys_does_not_grow_the_workers(gateway):
    pids = worker_pids(gateway)
    assert pids
    warm = [f"sk-dl-{i:016x}-warmup{i}" for i in range(500)]
    statuses = []
    flood(gateway, warm, statuses)
    before = rss_kb(pids)
    # 8,000-byte tokens (they fit gunicorn's 8,190-byte header field limit) and well-formed unknown keys
    big = [f"sk-dl-{i:016x}-" + "x" * 7_970 for i in range(16_000)]
    shaped = [f"sk-dl-{i:016x}-{'y' * 400}{i}" for i in range(4_000)]
    threads = [threading.Thread(target=flood, args=(gateway, part, statuses)) for part in
               (big[:8000], big[8000:], shaped)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [401] * 20_500
    grown_mb = (rss_kb(pids) - before) / 1024
    assert grown_mb < 20, f"workers grew by {grown_mb:.1f} MB"
