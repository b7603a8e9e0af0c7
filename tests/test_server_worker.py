"""Request bodies within bounds, and the gunicorn worker's JSON answers (e2e: test_hostile_clients)."""
import io
import subprocess
import sys

import pytest
from gunicorn.http import errors as http_errors

from deltallm import server
from deltallm.api import body
from deltallm.errors import InvalidRequest, RequestTooLarge


class Dripping(io.BytesIO):
    """A chunked stream as gunicorn gives it: short reads, ending with b''."""

    def read(self, size=-1):
        return super().read(min(size, 1000) if size and size > 0 else 1000)


def chunked(data):
    return {"wsgi.input": Dripping(data), "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}


def test_chunked_body_over_the_limit_is_refused_not_cut():
    with pytest.raises(RequestTooLarge):
        body.read(chunked(b"{}" + b" " * 5000), limit=4096)
    assert body.read(chunked(b"{}" + b" " * 4094), limit=4096) == b"{}" + b" " * 4094


def test_content_length_over_the_limit_is_refused_before_reading():
    environ = {"wsgi.input": io.BytesIO(b"x"), "CONTENT_LENGTH": "5000"}
    with pytest.raises(RequestTooLarge):
        body.read(environ, limit=4096)
    assert environ["wsgi.input"].tell() == 0


def test_body_without_length_from_a_server_that_does_not_end_it_is_empty():
    assert body.read({"wsgi.input": io.BytesIO(b"{}")}, limit=10) == b""


def test_malformed_chunked_body_is_400_and_closes_the_connection():
    class Broken:
        def read(self, size=-1):
            raise http_errors.InvalidChunkSize(b"zz")

    environ = {"wsgi.input": Broken()}
    with pytest.raises(InvalidRequest) as raised:
        body.BoundedInput(environ, 5).read(10)
    assert raised.value.status == 400 and raised.value.code == "invalid_chunked_body"
    assert environ[body.CLOSE_CONNECTION] is True


def test_body_over_the_limit_through_the_app_is_413(client, master):
    resp = client.post("/v1/chat/completions", input_stream=Dripping(b"{}" + b" " * (33 * 1024 * 1024)),
                       headers={**master, "Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "request_too_large"


def test_double_slashes_are_404_not_a_redirect(client, master):
    # (werkzeug's test client reads `//v1/...` as a host name: e2e/test_hostile_clients covers it)
    resp = client.get("/v1//models", headers=master)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("exc, status, code", [
    (http_errors.LimitRequestLine(5000, 4094), 414, "request_uri_too_long"),
    (http_errors.LimitRequestHeaders("fields"), 431, "request_headers_too_large"),
    (http_errors.InvalidRequestLine("x" * 5000), 400, "invalid_http_request"),
    (http_errors.InvalidChunkSize(b"zz"), 400, "invalid_chunked_body"),
    (http_errors.UnsupportedTransferCoding("gzip"), 501, "unsupported_transfer_coding"),
    (RuntimeError("boom"), 500, None),
])
def test_worker_errors_are_envelopes(exc, status, code):
    error = server.envelope_for(exc)
    assert (error.status, error.code) == (status, code)
    raw = server.response_bytes(error)
    assert raw.startswith(f"HTTP/1.1 {status} ".encode()) and b"Content-Type: application/json" in raw
    assert len(error.message) <= server.MAX_MESSAGE


def test_close_flag_is_kept_in_step():
    assert server.CLOSE_CONNECTION == body.CLOSE_CONNECTION


def test_gunicorn_master_loads_the_worker_without_app_dependencies():
    """The master imports the worker class; gevent workers must not inherit an imported Flask/DB/HTTP client."""
    code = ("import sys, deltallm.gunicorn_config as c\n"
            "from gunicorn.util import load_class\n"
            "assert load_class(c.worker_class).__name__ == 'Worker'\n"
            "print(sorted({'peewee', 'requests', 'urllib3', 'psycopg2', 'redis', 'flask'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_worker_exit_finds_the_gateway_behind_the_worker_wrapper(app, monkeypatch):
    """gunicorn gives the hook the worker, whose `wsgi` is our closing() wrapper around the Flask app:
    the usage writer must still be drained there (e2e: test_governance_e2e, SIGTERM under load)."""
    from deltallm import gunicorn_config
    closed = []
    monkeypatch.setattr(app.extensions["deltallm"], "close", lambda: closed.append(True))

    class FakeWorker:
        wsgi = server.closing(app)
    gunicorn_config.worker_exit(None, FakeWorker())
    assert closed == [True]
