"""Unit tests: batch object and line shapes, the lease, a revoked creator, and the in-process runner
resuming a batch that a stopped web process left half done."""
import time

import pytest

from deltallm import create_app, keys, models
from deltallm.db import connection
from deltallm.errors import AuthenticationFailed
from deltallm.jobs import lease, shapes
from deltallm.jobs.batch_job import principal_of
from deltallm.models import Batch, BatchItem, utcnow
from tests.conftest import base_config
from tests.jobs.batch_helpers import chat_line, content_lines, create, jsonl, upload, wait_for


def test_never_run_lines_are_the_same_when_written_twice():
    one = shapes.never_run("batch_1", 7, "c7", "batch_expired")
    assert one == shapes.never_run("batch_1", 7, "c7", "batch_expired")
    assert one["id"].startswith("batch_req_") and one["response"] is None
    assert one["error"]["code"] == "batch_expired" and one["error"]["message"]
    assert one["id"] != shapes.never_run("batch_1", 8, "c8", "batch_expired")["id"]


def test_answered_line_shape():
    line = shapes.answered("c1", "req_1", 200, {"object": "chat.completion"})
    assert line["response"] == {"status_code": 200, "request_id": "req_1", "body": {"object": "chat.completion"}}
    assert line["error"] is None and line["custom_id"] == "c1" and line["id"].startswith("batch_req_")


def test_batch_object_leaves_out_what_is_not_set():
    batch = Batch(id="batch_x", endpoint="/v1/embeddings", input_file_id="file-1", completion_window="24h",
                  status="failed", created_at=10, expires_at=86410, failed_at=12, total=0, completed=0, failed=0,
                  errors=[shapes.line_error(3, "invalid_json_line", "bad")], metadata=None)
    obj = shapes.batch_object(batch)
    assert obj["errors"] == {"object": "list", "data": [{"code": "invalid_json_line", "message": "bad",
                                                          "param": None, "line": 3}]}
    assert "output_file_id" not in obj and "completed_at" not in obj and obj["failed_at"] == 12
    assert obj["request_counts"] == {"total": 0, "completed": 0, "failed": 0} and obj["metadata"] is None


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path, embeddings_batch_enabled=True, batch_lease_seconds=1, batch_concurrency=2)
    cfg["model_list"].append({"model_name": "slow", "deltallm_params": {"model": "mock/slow",
                                                                       "mock_latency_ms": 100}})
    return cfg


def test_one_lease_holder_at_a_time(app, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(lease, "clock", lambda: now[0])
    with connection():
        Batch.create(id="batch_l", endpoint="/v1/embeddings", input_file_id="f", created_at=1, expires_at=2,
                     status="in_progress")
    lease.claim_new("batch_l", "job-a", 10)
    assert lease.acquire("batch_l", "job-a", 10) and not lease.acquire("batch_l", "job-b", 10)
    assert lease.stale() == []
    now[0] += 11
    assert [b.id for b in lease.stale()] == ["batch_l"]
    assert lease.claim_stale(lease.stale()[0], "job-c", 10)
    assert not lease.renew("batch_l", "job-a", 10), "the old holder learns it lost the batch"
    assert lease.renew("batch_l", "job-c", 10) and not lease.acquire("batch_l", "job-a", 10)


def test_a_revoked_creator_is_no_master(app):
    row, _ = keys.create_key(name="gone")
    with connection():
        row.revoked_at = utcnow()
        row.save()
    batch = Batch(owner=row.id)
    principal = principal_of(batch)
    assert not principal.is_master
    with pytest.raises(AuthenticationFailed):
        principal.may_use_model("mocky")
    batch.owner = "no-such-key"
    with pytest.raises(AuthenticationFailed):
        principal_of(batch).may_use_model("mocky")


def test_a_stopped_web_process_leaves_the_batch_to_the_next_one(config, auth, app):
    client = app.test_client()
    ids = [f"w{i}" for i in range(30)]
    batch = create(client, auth, upload(client, auth, jsonl(chat_line(i, model="slow") for i in ids)))
    deadline = time.monotonic() + 30
    while True:
        with connection():
            if BatchItem.select().where((BatchItem.batch_id == batch["id"]) & (BatchItem.state == "done")).count() >= 4:
                break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    app.extensions["deltallm"].close()  # the process stops: its job lets the batch go mid-way
    with connection():
        assert Batch.get_by_id(batch["id"]).status == "in_progress"
    again = create_app(config)
    done = wait_for(again.test_client(), auth, batch["id"])
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 30
    out = content_lines(again.test_client(), auth, done["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == sorted(ids)


def test_batches_are_404_when_batch_mode_is_off(tmp_path, master):
    off = create_app(base_config(tmp_path)).test_client()
    for method, path in (("get", "/v1/batches"), ("post", "/v1/batches"), ("get", "/v1/batches/batch_1"),
                         ("post", "/v1/batches/batch_1/cancel")):
        answer = getattr(off, method)(path, headers=master)
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found", path
