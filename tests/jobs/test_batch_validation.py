"""Batch input validation: every bad line is reported with its number and nothing runs; hostile files
(50,000 lines, 1 MB lines, one huge line, invalid UTF-8, empty) each get a clear outcome."""
import orjson
import pytest

from deltallm import create_app, keys, models
from deltallm.db import connection
from deltallm.models import BatchItem, Usage
from tests.conftest import base_config
from tests.jobs.batch_helpers import chat_line, create, embedding_line, jsonl, line, upload, wait_for


@pytest.fixture
def config(tmp_path):
    return base_config(tmp_path, embeddings_batch_enabled=True, batch_lease_seconds=2, max_request_body_mb=2)


@pytest.fixture
def app(config):
    app = create_app(config)
    models.migrate()
    return app


def failed_batch(client, auth, content, endpoint="/v1/chat/completions"):
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, content), endpoint=endpoint)["id"])
    assert batch["status"] == "failed" and batch["failed_at"], batch
    assert "output_file_id" not in batch and batch["request_counts"]["completed"] == 0
    with connection():
        assert not BatchItem.select().where(BatchItem.batch_id == batch["id"]).exists()
        assert not Usage.select().exists(), "nothing ran"
    return batch["errors"]["data"]


MCP = {"model": "mocky", "messages": [{"role": "user", "content": "x"}],
       "tools": [{"type": "mcp", "server_label": "s", "server_url": "https://mcp.test"}]}
BAD_LINES = [
    (b"{not json", "invalid_json_line", None),
    (b"[1, 2]", "invalid_json_line", None),
    (b'{"custom_id": "\xff\xfe", "method": "POST"}', "invalid_json_line", None),
    (orjson.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}), "missing_required_parameter",
     "custom_id"),
    (line("m", {"model": "mocky", "messages": []}, method="GET"), "invalid_method", "method"),
    (line("u", {"model": "mocky", "input": "x"}, url="/v1/embeddings"), "invalid_url", "url"),
    (line("b", {"model": "mocky"}), "invalid_request", "body.messages"),
    (line("t", {"model": "mocky", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
     "invalid_request", "body.temperature"),
    (line("s", {"model": "mocky", "messages": [{"role": "user", "content": "x"}], "stream": True}),
     "invalid_request", "body.stream"),
    (line("mcp", MCP), "invalid_request", "body.tools[0].type"),
    (chat_line("nm", model="no-such-model"), "model_not_found", "body.model"),
]


@pytest.mark.parametrize("bad,code,param", BAD_LINES, ids=[c for _, c, _ in BAD_LINES])
def test_each_kind_of_bad_line_fails_the_batch_with_its_line_number(client, auth, bad, code, param):
    errors = failed_batch(client, auth, jsonl([chat_line("ok1"), bad, chat_line("ok2")]))
    assert len(errors) == 1, errors
    error = errors[0]
    assert error["line"] == 2 and error["param"] == param and error["message"], error
    assert error["code"] == code, error


def test_every_bad_line_is_listed(client, auth):
    content = jsonl([chat_line("a"), b"nope", chat_line("a"), chat_line("b", model="nope"), chat_line("c")])
    errors = failed_batch(client, auth, content)
    assert [(e["line"], e["code"]) for e in errors] == [(2, "invalid_json_line"), (3, "duplicate_custom_id"),
                                                        (4, "model_not_found")]


def test_a_model_the_key_may_not_use(client):
    _, secret = keys.create_key(name="narrow", models=["gpt-4o-mini"])
    auth = {"Authorization": f"Bearer {secret}"}
    errors = failed_batch(client, auth, jsonl([chat_line("a", model="mocky")]))
    assert errors[0]["code"] == "model_not_allowed" and errors[0]["param"] == "body.model"


def test_an_empty_file(client, auth):
    assert failed_batch(client, auth, b"")[0]["code"] == "empty_file"
    assert failed_batch(client, auth, b"\n\n  \n")[0]["code"] == "empty_file"


def test_invalid_utf8_and_binary(client, auth):
    errors = failed_batch(client, auth, b"\x00\x01\xff\xfe\n" + bytes(range(11, 256)) + b"\n")
    assert [e["code"] for e in errors] == ["invalid_json_line", "invalid_json_line"]


def test_a_line_longer_than_a_request_may_be(client, auth):
    huge = chat_line("big", "x" * (3 * 1024 * 1024))  # max_request_body_mb is 2 here
    errors = failed_batch(client, auth, jsonl([chat_line("a"), huge, chat_line("b")]))
    assert [(e["line"], e["code"]) for e in errors] == [(2, "line_too_long")]


def test_one_huge_line_without_newline(client, auth):
    errors = failed_batch(client, auth, b"{" + b'"a": 1, ' * 700_000)
    assert [(e["line"], e["code"]) for e in errors] == [(1, "line_too_long")]


def test_one_megabyte_lines_run(client, auth):
    lines = [embedding_line(f"m{i}", "word " * 200_000) for i in range(3)]
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl(lines)),
                                          endpoint="/v1/embeddings")["id"])
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 3


def test_fifty_thousand_lines_are_accepted_and_one_more_is_not(client, auth):
    many = jsonl(embedding_line(f"n{i}") for i in range(50_001))
    errors = failed_batch(client, auth, many, endpoint="/v1/embeddings")
    assert errors == [{"code": "too_many_requests", "message": "A batch holds at most 50000 requests.",
                       "param": None, "line": 50_001}]
    ok = many[:many.rindex(b"\n", 0, len(many) - 1) + 1]  # the first 50,000 lines
    batch = create(client, auth, upload(client, auth, ok), endpoint="/v1/embeddings")
    batch = wait_for(client, auth, batch["id"], states=("in_progress", "completed"), timeout=120)
    assert batch["request_counts"]["total"] == 50_000
    client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth)
    done = wait_for(client, auth, batch["id"], timeout=120)
    assert done["status"] in ("cancelled", "completed")
    assert done["request_counts"]["total"] == 50_000


def test_too_many_errors_are_summed_up(client, auth):
    errors = failed_batch(client, auth, b"x\n" * 1500)
    assert len(errors) == 1001 and errors[-1] == {"code": "too_many_errors", "message": "500 more lines are invalid.",
                                                 "param": None, "line": None}
