"""Batches on the in-process runner (no Redis) with SQLite: the whole lifecycle through the HTTP API."""
import pytest

from deltallm import create_app, keys, models
from tests.conftest import base_config
from tests.jobs.batch_helpers import chat_line, content_lines, create, embedding_line, jsonl, upload, wait_for


@pytest.fixture
def app(tmp_path):
    app = create_app(base_config(tmp_path, embeddings_batch_enabled=True, batch_lease_seconds=2))
    models.migrate()
    return app


def test_a_chat_batch_runs_to_completion(client, auth):
    file_id = upload(client, auth, jsonl(chat_line(f"req-{i}", f"hello {i}") for i in range(20)))
    batch = create(client, auth, file_id, metadata={"job": "nightly"})
    assert batch["status"] == "validating" and batch["metadata"] == {"job": "nightly"}
    batch = wait_for(client, auth, batch["id"])
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert "error_file_id" not in batch
    out = content_lines(client, auth, batch["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == sorted(f"req-{i}" for i in range(20))
    first = next(o for o in out if o["custom_id"] == "req-3")
    assert first["response"]["status_code"] == 200 and first["error"] is None
    assert "hello 3" in first["response"]["body"]["choices"][0]["message"]["content"]


def test_embeddings_batch(client, auth):
    file_id = upload(client, auth, jsonl(embedding_line(f"e{i}") for i in range(5)))
    batch = wait_for(client, auth, create(client, auth, file_id, endpoint="/v1/embeddings")["id"])
    assert batch["status"] == "completed", batch
    out = content_lines(client, auth, batch["output_file_id"])
    assert {o["custom_id"] for o in out} == {f"e{i}" for i in range(5)}
    assert out[0]["response"]["body"]["data"][0]["object"] == "embedding"
