"""Batches on RQ with real `deltallm worker` processes and real Redis: a worker killed with SIGKILL
mid-batch loses and duplicates nothing, job.meta shows progress, and Redis going away stops neither the
web side nor the batch."""
import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest
import redis
import yaml
from rq import Queue

from deltallm import create_app, models
from deltallm.db import connection
from deltallm.jobs import runner
from deltallm.models import BatchItem
from tests.conftest import MASTER_KEY, REDIS_URL, ROOT, free_port
from tests.jobs.batch_helpers import chat_line, content_lines, create, jsonl, upload, wait_for

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


def settings(tmp_path, redis_url):
    return {"model_list": [{"model_name": "slow", "deltallm_params": {"model": "mock/slow", "mock_latency_ms": 50}}],
            "general_settings": {"master_key": MASTER_KEY, "database_url": str(tmp_path / "batches.db"),
                                 "redis_url": redis_url, "embeddings_batch_enabled": True,
                                 "batch_lease_seconds": 2, "batch_concurrency": 4}}


class Workers:
    """`deltallm worker` processes on one queue, each in its own process group (a SIGKILL takes all of it)."""

    def __init__(self, tmp_path, config, queue):
        self.path = tmp_path / "config.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.queue, self.tmp_path, self.procs = queue, tmp_path, []

    def start(self):
        log = (self.tmp_path / f"worker{len(self.procs)}.log").open("w")
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        proc = subprocess.Popen([sys.executable, "-m", "deltallm.cli", "worker", "--config", str(self.path),
                                 "--queue", self.queue], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**env, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, index=0):
        return (self.tmp_path / f"worker{index}.log").read_text()

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture
def queue_name(monkeypatch):
    name = f"deltallm-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(runner, "QUEUE", name)
    yield name
    Queue(name, connection=redis.Redis.from_url(REDIS_URL)).empty()


def done_count(batch_id):
    with connection():
        return BatchItem.select().where((BatchItem.batch_id == batch_id) & (BatchItem.state != "pending")).count()


def test_sigkill_mid_batch_loses_and_duplicates_nothing(tmp_path, queue_name):
    config = settings(tmp_path, REDIS_URL)
    app = create_app(config)
    models.migrate()
    client = app.test_client()
    workers = Workers(tmp_path, config, queue_name)
    ids = [f"k{i}" for i in range(150)]
    try:
        batch = create(client, MASTER, upload(client, MASTER, jsonl(chat_line(i, model="slow") for i in ids)))
        first = workers.start()
        deadline = time.monotonic() + 60
        while done_count(batch["id"]) < 20:
            assert time.monotonic() < deadline and first.poll() is None, workers.log(0)
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        with connection():
            before = {i.custom_id: i.result["id"] for i in BatchItem.select().where(
                (BatchItem.batch_id == batch["id"]) & (BatchItem.state == "done"))}
        assert 20 <= len(before) < len(ids), "killed mid-batch"
        workers.start()
        done = wait_for(client, MASTER, batch["id"], timeout=90)
    finally:
        workers.stop()
    assert done["status"] == "completed", (done, workers.log(1))
    assert done["request_counts"] == {"total": 150, "completed": 150, "failed": 0}
    out = content_lines(client, MASTER, done["output_file_id"])
    assert sorted(o["custom_id"] for o in out) == sorted(ids)
    kept = {o["custom_id"]: o["id"] for o in out if o["custom_id"] in before}
    assert kept == before, "answers stored before the kill are delivered as they were"
    assert "starting job" in workers.log(1), "the second worker's sweep took the batch over"


def test_job_description_and_meta(tmp_path, queue_name):
    config = settings(tmp_path, REDIS_URL)
    app = create_app(config)
    models.migrate()
    client = app.test_client()
    workers = Workers(tmp_path, config, queue_name)
    try:
        batch = create(client, MASTER, upload(client, MASTER, jsonl(chat_line(f"m{i}", model="slow")
                                                                    for i in range(30))))
        workers.start()
        done = wait_for(client, MASTER, batch["id"], timeout=60)
    finally:
        workers.stop()
    assert done["status"] == "completed"
    connection_ = redis.Redis.from_url(REDIS_URL)
    from rq.job import Job
    with connection():
        from deltallm.models import Batch
        job_id = Batch.get_by_id(batch["id"]).job_id
    job = Job.fetch(job_id, connection=connection_)
    assert batch["id"] in job.description and "/v1/chat/completions" in job.description
    assert "bytes" in job.description
    assert job.meta["total"] == 30 and job.meta["completed"] + job.meta["failed"] == 30


def test_redis_away_the_web_serves_and_the_batch_resumes(tmp_path, queue_name):
    port = free_port()
    own = f"redis://127.0.0.1:{port}/0"

    def redis_server():
        return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_redis():
        for _ in range(100):
            try:
                if redis.Redis.from_url(own).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    server = redis_server()
    wait_redis()
    config = settings(tmp_path, own)
    app = create_app(config)
    models.migrate()
    client = app.test_client()
    workers = Workers(tmp_path, config, queue_name)
    try:
        workers.start()
        ids = [f"r{i}" for i in range(80)]
        running = create(client, MASTER, upload(client, MASTER, jsonl(chat_line(i, model="slow") for i in ids)))
        wait_for(client, MASTER, running["id"], states=("in_progress",))
        server.terminate()
        server.wait()
        # Redis is gone: the rest of the API still answers, and a new batch is accepted
        answer = client.post("/v1/chat/completions", headers=MASTER,
                             json={"model": "slow", "messages": [{"role": "user", "content": "still here"}]})
        assert answer.status_code == 200
        later = create(client, MASTER, upload(client, MASTER, jsonl([chat_line("late", model="slow")])))
        assert later["status"] == "validating"
        assert client.get(f"/v1/batches/{running['id']}", headers=MASTER).status_code == 200
        time.sleep(1)
        server = redis_server()
        wait_redis()
        first = wait_for(client, MASTER, running["id"], timeout=90)
        second = wait_for(client, MASTER, later["id"], timeout=90)
    finally:
        workers.stop()
        server.terminate()
        server.wait()
    assert first["status"] == "completed" and first["request_counts"]["completed"] == 80, workers.log(0)
    assert sorted(o["custom_id"] for o in content_lines(client, MASTER, first["output_file_id"])) == sorted(ids)
    assert second["status"] == "completed", workers.log(0)
    assert [o["custom_id"] for o in content_lines(client, MASTER, second["output_file_id"])] == ["late"]
