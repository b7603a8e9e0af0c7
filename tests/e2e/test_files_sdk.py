"""The Files API with the openai SDK through gunicorn/gevent: create, list (paged), retrieve, content,
delete; owner scoping; a 50 MB upload that does not grow the worker; 413 on the wire; PostgreSQL too."""
import hashlib
import os
import socket

import openai
import pytest
import requests

from tests.e2e.conftest import MASTER, gateway_config, running_gateway

LIMIT_MB = 60
LINES = b"".join(b'{"custom_id": "%d", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", '
                 b'"input": "x"}}\n' % i for i in range(100))


def files_config(upstream, database):
    return gateway_config(upstream, database) + (f"  embeddings_batch_enabled: true\n"
                                                 f"  max_file_size_mb: {LIMIT_MB}\n")


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files")
    with running_gateway(files_config(upstream_url, tmp / "files.db"), tmp) as url:
        yield url


def sdk(url, key=MASTER):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=120)


def new_key(url):
    made = requests.post(url + "/admin/keys", json={"name": "files-e2e"}, timeout=10,
                         headers={"Authorization": f"Bearer {MASTER}"})
    assert made.status_code == 201
    return made.json()["key"]


def round_trip(url):
    client = sdk(url, new_key(url))
    made = [client.files.create(file=(f"in-{i}.jsonl", LINES), purpose="batch") for i in range(5)]
    assert all(f.object == "file" and f.bytes == len(LINES) and f.status == "processed" for f in made)
    assert client.files.retrieve(made[0].id) == made[0]
    assert client.files.content(made[0].id).content == LINES
    page = client.files.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [f.id for f in page] == [f.id for f in made[::-1]]   # the SDK fetches every page (after=), newest first
    assert [f.id for f in client.files.list(purpose="batch", order="asc")] == [f.id for f in made]
    gone = client.files.delete(made[0].id)
    assert (gone.id, gone.deleted) == (made[0].id, True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(made[0].id)
    return client, made


def test_files_with_the_openai_sdk(gateway):
    client, made = round_trip(gateway)
    stranger = sdk(gateway, new_key(gateway))
    for call in (lambda: stranger.files.retrieve(made[1].id), lambda: stranger.files.content(made[1].id),
                 lambda: stranger.files.delete(made[1].id)):
        with pytest.raises(openai.NotFoundError) as info:
            call()
        assert info.value.body["code"] == "not_found"
    assert stranger.files.list().data == []
    assert sdk(gateway).files.retrieve(made[1].id).id == made[1].id        # the master key sees it
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.jsonl", LINES), purpose="batch_output")
    assert info.value.body["param"] == "purpose"


def test_files_on_postgres_under_gevent(upstream_url, tmp_path, pg_url):
    with running_gateway(files_config(upstream_url, pg_url), tmp_path) as url:
        round_trip(url)


def workers(master_pid):
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as fh:
        return [int(pid) for pid in fh.read().split()]


def memory_kb(pid, field):
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def test_a_50_mb_upload_and_download_do_not_grow_the_worker(gateway, tmp_path):
    big = tmp_path / "big.jsonl"
    digest = hashlib.sha256()
    with big.open("wb") as fh:
        for _ in range(50 * 1024 * 1024 // len(LINES) + 1):
            fh.write(LINES)
            digest.update(LINES)
    client = sdk(gateway)
    for _ in range(4):  # warm both workers up on a small file (imports, pools)
        client.files.content(client.files.create(file=("warm.jsonl", LINES), purpose="batch").id).read()
    pids = workers(gateway.proc.pid)
    before = {pid: memory_kb(pid, "VmHWM") for pid in pids}           # peak resident set so far
    with big.open("rb") as fh:
        made = client.files.create(file=("big.jsonl", fh), purpose="batch")
    assert made.bytes == big.stat().st_size > 50 * 1024 * 1024
    download = hashlib.sha256()
    with client.files.with_streaming_response.content(made.id) as resp:
        for piece in resp.iter_bytes(1024 * 1024):
            download.update(piece)
    assert download.hexdigest() == digest.hexdigest()
    growth = max(memory_kb(pid, "VmHWM") - before[pid] for pid in pids)
    assert growth < 20 * 1024, f"a worker's peak RSS grew by {growth} kB for a 50 MB file"


def raw_request(url, head, body=b""):
    """Send a request on a plain socket and read the whole answer (the server closes the connection)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return answer
            answer += data


def test_413_on_the_wire(gateway):
    boundary = "zz"
    head = (f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n")
    declared = raw_request(gateway, (head + f"Content-Length: {LIMIT_MB * 2 * 1024 * 1024}\r\n\r\n").encode())
    assert declared.startswith(b"HTTP/1.1 413 ") and b"request_too_large" in declared
    assert b"\r\nConnection: close\r\n" in declared
    # chunked: no length up front; refused once the file passes the limit, never stored; the rest of
    # a body a little over the limit is read, so the client that sends it all gets the answer
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--{boundary}\r\n'
            f'Content-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n').encode()
    piece = os.urandom(1024 * 1024)
    chunks = [part] + [piece] * (LIMIT_MB + 1)
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    before = [f.id for f in sdk(gateway).files.list()]
    answer = raw_request(gateway, (head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode(), body)
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"param":"file"' in answer
    assert [f.id for f in sdk(gateway).files.list()] == before


def test_the_sdk_gets_413_for_a_file_a_little_over_the_limit(gateway):
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway).files.create(file=("big.jsonl", b"x" * (LIMIT_MB * 1024 * 1024 + 1)), purpose="batch")
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"
