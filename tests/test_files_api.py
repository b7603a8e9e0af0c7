"""The Files API through the Flask client: upload (streamed, bounded), list pages, retrieve, content, delete,
owner scoping, errors in the OpenAI envelope, and the embeddings_batch_enabled switch."""
import io

import pytest
from openai.types import FileDeleted, FileObject

from deltallm import create_app, keys, models
from deltallm.db import connection
from deltallm.models import File, FileChunk
from tests import openapi
from tests.conftest import base_config

JSONL = b'{"custom_id": "1", "method": "POST", "url": "/v1/embeddings", "body": {}}\n' * 3


@pytest.fixture
def config(tmp_path):
    return base_config(tmp_path, embeddings_batch_enabled=True, max_file_size_mb=0.25)


@pytest.fixture
def environs(app):
    """The WSGI environ of each request (the test client hands the app a copy of its own)."""
    seen, inner = [], app.wsgi_app

    def wsgi(environ, start_response):
        seen.append(environ)
        return inner(environ, start_response)
    app.wsgi_app = wsgi
    return seen


def upload(client, headers, content=JSONL, filename="input.jsonl", purpose="batch", **fields):
    data = {"file": (io.BytesIO(content), filename), **fields}
    if purpose is not None:
        data["purpose"] = purpose
    return client.post("/v1/files", headers=headers, data=data)


def check_file(body):
    """OpenAI's component schema (which lists expires_at and status_details as non-null, though OpenAI
    returns null for them) and the SDK's type."""
    assert body["status_details"] is None
    openapi.check("OpenAIFile", {k: v for k, v in body.items() if v is not None})
    FileObject.model_validate(body)
    return body


def stored_rows():
    with connection():
        return File.select().count(), FileChunk.select().count()


def error(resp, status, code=None, param=None):
    body = resp.get_json()
    assert resp.status_code == status, body
    openapi.check("ErrorResponse", body)
    assert (body["error"]["code"], body["error"]["param"]) == (code, param)
    return body["error"]


def test_upload_retrieve_download_delete(client, auth):
    resp = upload(client, auth)
    assert resp.status_code == 200
    made = check_file(resp.get_json())
    assert made["id"].startswith("file-") and made["object"] == "file"
    assert (made["bytes"], made["filename"], made["purpose"], made["status"]) == (len(JSONL), "input.jsonl",
                                                                                 "batch", "processed")
    assert made["expires_at"] == made["created_at"] + 30 * 86400   # OpenAI's default for batch files
    assert client.get(f"/v1/files/{made['id']}", headers=auth).get_json() == made
    content = client.get(f"/v1/files/{made['id']}/content", headers=auth)
    assert content.status_code == 200 and content.data == JSONL
    assert content.headers["Content-Type"] == "application/jsonl"
    assert content.headers["Content-Length"] == str(len(JSONL))
    gone = client.delete(f"/v1/files/{made['id']}", headers=auth)
    assert gone.get_json() == {"id": made["id"], "object": "file", "deleted": True}
    openapi.check("DeleteFileResponse", gone.get_json())
    FileDeleted.model_validate(gone.get_json())
    for path in (f"/v1/files/{made['id']}", f"/v1/files/{made['id']}/content"):
        error(client.get(path, headers=auth), 404, "not_found", "id")
    error(client.delete(f"/v1/files/{made['id']}", headers=auth), 404, "not_found", "id")
    assert stored_rows() == (0, 0)


def test_content_types_and_other_purposes(client, master):
    image = check_file(upload(client, master, b"\x89PNG\r\n", "cat.png", "vision").get_json())
    assert image["expires_at"] is None                                 # only batch files expire by default
    resp = client.get(f"/v1/files/{image['id']}/content", headers=master)
    assert resp.headers["Content-Type"] == "application/octet-stream" and resp.data == b"\x89PNG\r\n"
    notes = check_file(upload(client, master, b"{}\n", "notes.JSONL", "user_data").get_json())
    assert client.get(f"/v1/files/{notes['id']}/content", headers=master).headers["Content-Type"] == \
        "application/jsonl"
    for purpose in ("assistants", "fine-tune", "evals"):
        assert upload(client, master, purpose=purpose).get_json()["purpose"] == purpose


def test_purpose_may_come_after_the_file(client, auth):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"late.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode() + JSONL + \
        (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
         f"--{boundary}--\r\n").encode()
    resp = client.post("/v1/files", headers=auth, data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")
    assert resp.status_code == 200 and resp.get_json()["purpose"] == "batch"
    assert client.get(f"/v1/files/{resp.get_json()['id']}/content", headers=auth).data == JSONL


def test_expires_after(client, auth):
    made = upload(client, auth, purpose="user_data", **{"expires_after[anchor]": "created_at",
                                                         "expires_after[seconds]": "3600"}).get_json()
    assert made["expires_at"] == made["created_at"] + 3600
    for fields, param in (({"expires_after[anchor]": "now", "expires_after[seconds]": "3600"}, "expires_after.anchor"),
                          ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"}, "expires_after.seconds"),
                          ({"expires_after[anchor]": "created_at"}, "expires_after.seconds"),
                          ({"expires_after[seconds]": "3600"}, "expires_after.anchor")):
        error(upload(client, auth, **fields), 400, None, param)
    assert stored_rows() == (1, 1)


@pytest.mark.parametrize("purpose, field", [(None, "purpose"), ("", "purpose"), ("batch_output", "purpose"),
                                            ("fine_tune", "purpose")])
def test_bad_purposes_store_nothing(client, auth, purpose, field):
    error(upload(client, auth, purpose=purpose), 400, None, field)
    assert stored_rows() == (0, 0)


def test_malformed_uploads(client, auth):
    only_purpose = b'--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--x--\r\n'
    error(client.post("/v1/files", headers=auth, data=only_purpose, content_type="multipart/form-data; boundary=x"),
          400, None, "file")
    error(client.post("/v1/files", headers=auth, data={"purpose": "batch"}), 400)   # not multipart
    error(client.post("/v1/files", headers=auth, json={"purpose": "batch"}), 400)
    error(upload(client, auth, extra="1"), 400, None, "extra")
    error(client.post("/v1/files", headers=auth, data={"purpose": "batch", "file": (io.BytesIO(b"x"), "")}),
          400, None, "file")
    two = {"purpose": "batch", "file": [(io.BytesIO(b"a"), "a.jsonl"), (io.BytesIO(b"b"), "b.jsonl")]}
    error(client.post("/v1/files", headers=auth, data=two), 400, None, "file")
    other = {"purpose": "batch", "document": (io.BytesIO(b"a"), "a.jsonl")}
    error(client.post("/v1/files", headers=auth, data=other), 400, None, "document")
    twice = {"purpose": ["batch", "batch"], "file": (io.BytesIO(b"a"), "a.jsonl")}
    error(client.post("/v1/files", headers=auth, data=twice), 400, None, "purpose")
    cut = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'
    error(client.post("/v1/files", headers=auth, data=cut, content_type="multipart/form-data; boundary=x"), 400)
    assert stored_rows() == (0, 0)


def test_a_file_over_max_file_size_mb_is_413_and_nothing_is_kept(client, auth):
    limit = int(0.25 * 1024 * 1024)
    assert upload(client, auth, b"x" * limit).status_code == 200           # exactly the limit is fine
    message = error(upload(client, auth, b"x" * (limit + 1)), 413, "request_too_large", "file")["message"]
    assert "max_file_size_mb: 0.25" in message
    assert stored_rows() == (1, 1)


class Drip:
    """A request body produced as it is read (no Content-Length, like a chunked upload); counts what the
    server read."""

    def __init__(self, total):
        self.head = (b'--x\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
                     b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n')
        self.total, self.sent = total, 0

    def read(self, size=-1):
        if self.head:
            out, self.head = self.head, b""
            return out
        if self.sent >= self.total:
            return b""
        size = min(size if size > 0 else 65536, self.total - self.sent)
        self.sent += size
        return b"y" * size


@pytest.mark.parametrize("total, closed", [(100 * 1024 * 1024, True), (300 * 1024, False)])
def test_a_streamed_upload_is_refused_as_it_passes_the_limit(client, auth, environs, total, closed):
    """Chunked (no length up front): 413 once the file passes the limit, nothing kept. What is left of the
    body is read and dropped up to 16 MiB (so that a client still sending sees the answer); past that the
    connection is closed unread."""
    body = Drip(total=total)
    resp = client.post("/v1/files", headers={**auth, "Transfer-Encoding": "chunked"},
                       content_type="multipart/form-data; boundary=x",
                       environ_overrides={"wsgi.input": body, "wsgi.input_terminated": True})
    error(resp, 413, "request_too_large", "file")
    assert body.sent < 0.25 * 1024 * 1024 + 16 * 1024 * 1024 + 256 * 1024   # never the whole 100 MB
    assert (body.sent == total) is not closed
    assert bool(environs[-1].get("deltallm.close_connection")) is closed
    assert stored_rows() == (0, 0)


def test_a_declared_length_over_the_limit_is_refused_before_reading(client, auth, environs):
    body = Drip(total=0)
    resp = client.post("/v1/files", headers=auth, content_type="multipart/form-data; boundary=x",
                       environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(50 * 1024 * 1024)})
    error(resp, 413, "request_too_large", "file")
    assert body.head and environs[-1]["deltallm.close_connection"]  # nothing was read
    assert stored_rows() == (0, 0)


def test_only_the_owner_or_the_master_key_sees_a_file(client, auth, master):
    other = {"Authorization": f"Bearer {keys.create_key(name='other')[1]}"}
    mine = upload(client, auth).get_json()["id"]
    masters = upload(client, master).get_json()["id"]
    for method, path in (("get", f"/v1/files/{mine}"), ("get", f"/v1/files/{mine}/content"),
                         ("delete", f"/v1/files/{mine}")):
        message = error(getattr(client, method)(path, headers=other), 404, "not_found", "id")["message"]
        assert message == f"No such File object: {mine}"        # the same words as for no file at all
    assert client.get("/v1/files", headers=other).get_json()["data"] == []
    assert [f["id"] for f in client.get("/v1/files", headers=auth).get_json()["data"]] == [mine]
    assert {f["id"] for f in client.get("/v1/files", headers=master).get_json()["data"]} == {mine, masters}
    error(client.get(f"/v1/files/{masters}", headers=auth), 404, "not_found", "id")
    assert client.get(f"/v1/files/{mine}/content", headers=master).data == JSONL
    assert client.delete(f"/v1/files/{mine}", headers=master).get_json()["deleted"] is True
    error(client.get(f"/v1/files/{mine}", headers=auth), 404, "not_found", "id")
    error(client.get("/v1/files"), 401, "invalid_api_key")


def test_list_pages(client, auth):
    made = [upload(client, auth, purpose="batch" if i % 2 else "user_data").get_json()["id"] for i in range(5)]
    full = client.get("/v1/files", headers=auth).get_json()
    openapi.check("ListFilesResponse", {**full, "data": [{k: v for k, v in f.items() if v is not None}
                                                         for f in full["data"]]})
    newest_first = [f["id"] for f in full["data"]]
    assert sorted(newest_first) == sorted(made) and full["has_more"] is False
    assert (full["first_id"], full["last_id"]) == (newest_first[0], newest_first[-1])
    page = client.get("/v1/files?limit=2", headers=auth).get_json()
    assert [f["id"] for f in page["data"]] == newest_first[:2] and page["has_more"] is True
    page = client.get(f"/v1/files?limit=2&after={page['last_id']}", headers=auth).get_json()
    assert [f["id"] for f in page["data"]] == newest_first[2:4] and page["has_more"] is True
    page = client.get(f"/v1/files?limit=2&after={page['last_id']}", headers=auth).get_json()
    assert [f["id"] for f in page["data"]] == newest_first[4:] and page["has_more"] is False
    oldest_first = client.get("/v1/files?order=asc", headers=auth).get_json()
    assert [f["id"] for f in oldest_first["data"]] == newest_first[::-1]
    batch = client.get("/v1/files?purpose=batch", headers=auth).get_json()["data"]
    assert {f["purpose"] for f in batch} == {"batch"} and len(batch) == 2
    empty = client.get("/v1/files?purpose=vision", headers=auth).get_json()
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize("query, param, status", [
    ("limit=0", "limit", 400), ("limit=10001", "limit", 400), ("limit=ten", "limit", 400),
    ("order=newest", "order", 400), ("after=file-nope", "after", 404), ("page=2", "page", 400),
    ("limit=1&limit=2", "limit", 400),
])
def test_bad_list_queries(client, auth, query, param, status):
    error(client.get(f"/v1/files?{query}", headers=auth), status, "not_found" if status == 404 else None, param)


def test_another_keys_file_is_no_cursor(client, auth, master):
    masters = upload(client, master).get_json()["id"]
    error(client.get(f"/v1/files?after={masters}", headers=auth), 404, "not_found", "after")


def test_uploads_go_to_the_configured_s3_bucket(tmp_path, s3_bucket, master):
    app = create_app(base_config(tmp_path, embeddings_batch_enabled=True, files_storage=s3_bucket))
    models.migrate()
    client = app.test_client()
    made = upload(client, master).get_json()
    storage = app.extensions["deltallm"].storage
    assert storage.name == "s3"
    head = storage.client.head_object(Bucket=s3_bucket["bucket"], Key=f"files/{made['id']}")
    assert head["ContentLength"] == len(JSONL) and stored_rows() == (1, 0)
    assert client.get(f"/v1/files/{made['id']}/content", headers=master).data == JSONL
    client.delete(f"/v1/files/{made['id']}", headers=master)
    assert storage.client.list_objects_v2(Bucket=s3_bucket["bucket"])["KeyCount"] == 0


@pytest.mark.parametrize("method, path", [("post", "/v1/files"), ("get", "/v1/files"), ("get", "/v1/files/file-1"),
                                          ("get", "/v1/files/file-1/content"), ("delete", "/v1/files/file-1"),
                                          ("get", "/files")])
@pytest.mark.parametrize("with_key", [True, False])
def test_files_routes_are_unknown_while_batches_are_off(tmp_path, master, method, path, with_key):
    client = create_app(base_config(tmp_path)).test_client()
    resp = getattr(client, method)(path, headers=master if with_key else {})
    assert error(resp, 404, "not_found")["message"].startswith(f"Unknown request URL: {method.upper()} {path}")
