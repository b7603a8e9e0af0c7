"""The official openai SDK end to end against gunicorn + gevent: files.create, batches.create, polling
batches.retrieve, files.content, batches.list pagination and batches.cancel, on the in-process runner
(SQLite, and PostgreSQL made green), for chat, embeddings and a native provider (Anthropic)."""
import time

import openai
import orjson
import pytest

from deltallm import db, models
from tests.e2e.conftest import MASTER, running_gateway


def config(upstream, database):
    return f"""
model_list:
  - model_name: gpt-4o-mini
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream}/v1, api_key: upstream-secret}}
  - model_name: text-embedding-3-small
    deltallm_params: {{model: openai/text-embedding-3-small, api_base: {upstream}/v1, api_key: upstream-secret}}
  - model_name: claude
    deltallm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: {upstream}/v1, api_key: upstream-secret}}
  - model_name: slow
    deltallm_params: {{model: mock/slow, mock_latency_ms: 200}}
general_settings:
  master_key: {MASTER}
  database_url: {database}
  embeddings_batch_enabled: true
  batch_lease_seconds: 3
  batch_concurrency: 4
"""


def request(custom_id, endpoint, model, text):
    body = ({"model": model, "input": text} if endpoint == "/v1/embeddings"
            else {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20})
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}) + b"\n"


def finished(sdk, batch_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def run_batch(sdk, endpoint, model, n=12):
    content = b"".join(request(f"{model}-{i}", endpoint, model, f"hello {i}") for i in range(n))
    file = sdk.files.create(file=("input.jsonl", content), purpose="batch")
    batch = sdk.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h",
                               metadata={"run": "e2e"})
    assert batch.status == "validating" and batch.metadata == {"run": "e2e"}
    batch = finished(sdk, batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.total == n and batch.request_counts.completed == n
    assert batch.error_file_id is None
    output = [orjson.loads(raw) for raw in sdk.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in output) == sorted(f"{model}-{i}" for i in range(n))
    return batch, {o["custom_id"]: o for o in output}


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batches")
    with running_gateway(config(upstream_url, tmp / "batches.db"), tmp) as url:
        yield url


@pytest.fixture
def sdk(gateway):
    return openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER, max_retries=0, timeout=30)


@pytest.mark.parametrize("endpoint,model", [("/v1/chat/completions", "gpt-4o-mini"), ("/v1/embeddings",
                         "text-embedding-3-small"), ("/v1/chat/completions", "claude")])
def test_a_batch_end_to_end(sdk, endpoint, model):
    _, output = run_batch(sdk, endpoint, model)
    first = output[f"{model}-0"]["response"]
    assert first["status_code"] == 200
    if endpoint == "/v1/embeddings":
        assert first["body"]["object"] == "list" and first["body"]["data"][0]["embedding"]
    else:
        assert first["body"]["object"] == "chat.completion"
        assert first["body"]["choices"][0]["message"]["content"] == "echo: hello 0"


def test_list_pages_and_cancel(sdk):
    made = [run_batch(sdk, "/v1/chat/completions", "gpt-4o-mini", n=2)[0].id for _ in range(3)]
    page = sdk.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    every = [b.id for b in sdk.batches.list(limit=2)]  # the SDK follows `after` through every page
    assert every[:3] == made[::-1] and len(every) == len(set(every))
    content = b"".join(request(f"s{i}", "/v1/chat/completions", "slow", "x") for i in range(60))
    file = sdk.files.create(file=("slow.jsonl", content), purpose="batch")
    batch = sdk.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h")
    while sdk.batches.retrieve(batch.id).request_counts.completed < 4:
        time.sleep(0.05)
    assert sdk.batches.cancel(batch.id).status == "cancelling"
    batch = finished(sdk, batch.id)
    assert batch.status == "cancelled"
    output = [orjson.loads(r) for r in sdk.files.content(batch.output_file_id).text.splitlines()]
    errors = [orjson.loads(r) for r in sdk.files.content(batch.error_file_id).text.splitlines()]
    assert sorted(o["custom_id"] for o in output + errors) == sorted(f"s{i}" for i in range(60))
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}


def test_batches_on_postgres_under_gevent(tmp_path, upstream_url, pg_url):
    db.init(pg_url)
    with db.connection():
        db.database.drop_tables(models.MODELS, safe=True)  # the gunicorn master creates them
    db.database.close_all()
    with running_gateway(config(upstream_url, tmp_path / "unused.db"), tmp_path, DATABASE_URL=pg_url) as url:
        sdk = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0, timeout=30)
        batch, _ = run_batch(sdk, "/v1/chat/completions", "gpt-4o-mini", n=40)
        assert batch.in_progress_at and batch.completed_at
    assert not (tmp_path / "unused.db").exists()
