"""Batch lifecycle on the in-process runner (SQLite): failures per line, usage, limits, cancel, expiry."""
import time

import openai.types
import orjson
import pytest
import responses

from deltallm import create_app, keys, models
from deltallm.db import connection
from deltallm.jobs import execute, lease
from deltallm.models import BatchItem, Usage
from tests import openapi
from tests.conftest import UPSTREAM, base_config
from tests.jobs.batch_helpers import chat_line, content_lines, create, jsonl, upload, wait_for


@pytest.fixture
def config(tmp_path):
    cfg = base_config(tmp_path, embeddings_batch_enabled=True, batch_lease_seconds=2, batch_concurrency=4)
    cfg["model_list"].append({"model_name": "slow", "deltallm_params": {"model": "mock/slow",
                                                                       "mock_latency_ms": 150}})
    return cfg


@pytest.fixture
def app(config):
    app = create_app(config)
    models.migrate()
    return app


def exactly_once(client, auth, batch, ids):
    out = content_lines(client, auth, batch.get("output_file_id"))
    err = content_lines(client, auth, batch.get("error_file_id"))
    seen = [o["custom_id"] for o in out + err]
    assert sorted(seen) == sorted(ids), "every custom_id exactly once across output and error files"
    return out, err


def test_batch_object_matches_openai(client, auth):
    batch = create(client, auth, upload(client, auth, jsonl([chat_line("a")])))
    openapi.check("Batch", batch)
    openai.types.Batch.model_validate(batch)
    done = wait_for(client, auth, batch["id"])
    openapi.check("Batch", done)
    assert done["in_progress_at"] and done["finalizing_at"] and done["completed_at"]
    assert done["expires_at"] == done["created_at"] + 86400
    listing = client.get("/v1/batches", headers=auth).get_json()
    openapi.check("ListBatchesResponse", listing)


def test_upstream_rejections_go_to_the_error_file_with_status_and_body(client, auth, upstream):
    def answer(request):
        body = orjson.loads(request.body)
        if "bad" in body["messages"][0]["content"]:
            return 400, {}, orjson.dumps({"error": {"message": "bad request here", "type": "invalid_request_error",
                                                    "param": None, "code": None}})
        return 200, {}, orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                   "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
    upstream.add_callback(responses.POST, f"{UPSTREAM}/chat/completions", callback=answer)
    lines = [chat_line(f"ok{i}", "fine", model="gpt-4o-mini") for i in range(4)] + \
            [chat_line("x1", "bad one", model="gpt-4o-mini")]
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl(lines)))["id"])
    assert batch["status"] == "completed" and batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    out, err = exactly_once(client, auth, batch, [f"ok{i}" for i in range(4)] + ["x1"])
    assert err[0]["response"]["status_code"] == 400 and err[0]["error"] is None
    assert err[0]["response"]["body"]["error"]["message"].startswith("bad request here")
    assert err[0]["id"].startswith("batch_req_") and out[0]["response"]["request_id"].startswith("req_")


def test_each_line_is_billed_to_the_key_with_the_batch_marker(app, client, auth, api_key):
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl(
        chat_line(f"u{i}") for i in range(3))))["id"])
    app.extensions["deltallm"].writer.drain()
    with connection():
        rows = list(Usage.select().where(Usage.batch_id == batch["id"]))
    key_id = api_key.split("-")[2]
    assert len(rows) == 3 and {r.key_id for r in rows} == {key_id}
    assert {r.endpoint for r in rows} == {"/v1/chat/completions"} and all(r.status == 200 for r in rows)


def test_a_rate_limited_line_waits_and_never_fails(client, app):
    _, secret = keys.create_key(name="narrow", max_parallel_requests=1)
    auth = {"Authorization": f"Bearer {secret}"}
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl(
        chat_line(f"r{i}", model="slow") for i in range(6))))["id"])
    assert batch["request_counts"] == {"total": 6, "completed": 6, "failed": 0}


def test_a_retryable_failure_is_tried_again(client, auth, upstream, monkeypatch):
    monkeypatch.setattr(execute, "BACKOFF", 0.01)
    calls = []

    def flaky(request):
        calls.append(1)
        if len(calls) <= 3:  # the router's three tries fail; the batch's own retry answers
            return 503, {}, b'{"error": {"message": "overloaded"}}'
        return 200, {}, orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                   "finish_reason": "stop"}]})
    upstream.add_callback(responses.POST, f"{UPSTREAM}/chat/completions", callback=flaky)
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl(
        [chat_line("only", model="gpt-4o-mini")])))["id"])
    assert batch["request_counts"] == {"total": 1, "completed": 1, "failed": 0} and len(calls) == 4


def test_cancel_delivers_partial_results_and_cancels_the_rest(client, auth):
    ids = [f"c{i}" for i in range(40)]
    batch = create(client, auth, upload(client, auth, jsonl(chat_line(i, model="slow") for i in ids)))
    wait_for(client, auth, batch["id"], states=("in_progress",))
    time.sleep(0.4)
    cancelling = client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth).get_json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
    done = wait_for(client, auth, batch["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"]
    out, err = exactly_once(client, auth, done, ids)
    assert out and err
    assert {e["error"]["code"] for e in err} == {"batch_cancelled"} and all(e["response"] is None for e in err)
    again = client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth)
    assert again.status_code == 200 and again.get_json()["status"] == "cancelled"


def test_a_finished_batch_cannot_be_cancelled(client, auth):
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl([chat_line("a")])))["id"])
    answer = client.post(f"/v1/batches/{batch['id']}/cancel", headers=auth)
    assert answer.status_code == 409 and answer.get_json()["error"]["type"] == "invalid_request_error"


def test_expiry_after_24_hours(client, auth, monkeypatch):
    ids = [f"x{i}" for i in range(40)]
    batch = create(client, auth, upload(client, auth, jsonl(chat_line(i, model="slow") for i in ids)))
    wait_for(client, auth, batch["id"], states=("in_progress",))
    time.sleep(0.4)
    start = time.time()
    monkeypatch.setattr(lease, "clock", lambda: time.time() - start + batch["created_at"] + 86400)
    done = wait_for(client, auth, batch["id"])
    assert done["status"] == "expired" and done["expired_at"] >= done["expires_at"]
    out, err = exactly_once(client, auth, done, ids)
    assert out and {e["error"]["code"] for e in err} == {"batch_expired"}


def test_batches_are_scoped_to_their_key_and_listed_newest_first(client, auth, master):
    file_id = upload(client, auth, jsonl([chat_line("a")]))
    made = [create(client, auth, file_id)["id"] for _ in range(3)]
    _, other = keys.create_key(name="other")
    other = {"Authorization": f"Bearer {other}"}
    assert client.get(f"/v1/batches/{made[0]}", headers=other).status_code == 404
    assert client.get("/v1/batches", headers=other).get_json()["data"] == []
    assert client.post("/v1/batches", headers=other, json={"input_file_id": file_id,
                                                           "endpoint": "/v1/chat/completions"}).status_code == 404
    page = client.get("/v1/batches?limit=2", headers=auth).get_json()
    assert [b["id"] for b in page["data"]] == made[::-1][:2] and page["has_more"] is True
    rest = client.get(f"/v1/batches?limit=2&after={page['last_id']}", headers=auth).get_json()
    assert [b["id"] for b in rest["data"]] == [made[0]] and rest["has_more"] is False
    assert client.get(f"/v1/batches/{made[0]}", headers=master).status_code == 200
    for batch_id in made:
        wait_for(client, auth, batch_id)


@pytest.mark.parametrize("body,status,param", [
    ({"endpoint": "/v1/chat/completions"}, 400, "input_file_id"),
    ({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions"}, 404, "input_file_id"),
    ({"input_file_id": "FILE", "endpoint": "/v1/images/generations"}, 400, "endpoint"),
    ({"input_file_id": "FILE", "endpoint": "/v1/chat/completions", "completion_window": "48h"}, 400,
     "completion_window"),
    ({"input_file_id": "FILE", "endpoint": "/v1/chat/completions", "surprise": 1}, 400, "surprise"),
    ({"input_file_id": "FILE", "endpoint": "/v1/chat/completions", "metadata": {"k": 1}}, 400, "metadata"),
])
def test_create_refuses_bad_requests(client, auth, body, status, param):
    file_id = upload(client, auth, jsonl([chat_line("a")]))
    body = {k: (file_id if v == "FILE" else v) for k, v in body.items()}
    answer = client.post("/v1/batches", headers=auth, json=body)
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"]["param"] == param


def test_completion_window_null_means_24h(client, auth):
    file_id = upload(client, auth, jsonl([chat_line("a")]))
    batch = create(client, auth, file_id, completion_window=None)
    assert batch["completion_window"] == "24h"
    wait_for(client, auth, batch["id"])


def test_items_keep_their_results_in_the_database(client, auth):
    batch = wait_for(client, auth, create(client, auth, upload(client, auth, jsonl([chat_line("a")])))["id"])
    with connection():
        item = BatchItem.get(BatchItem.batch_id == batch["id"])
    assert item.state == "done" and item.result["custom_id"] == "a"
