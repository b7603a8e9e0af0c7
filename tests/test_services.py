"""Against the real services CI starts: PostgreSQL for the database, Redis for readiness and RQ."""
import pytest

from deltallm import create_app, db, keys, models
from tests.conftest import REDIS_URL, base_config


@pytest.fixture
def pg_app(tmp_path, pg_url):
    app = create_app(base_config(tmp_path, database_url=pg_url, redis_url=REDIS_URL))
    with db.connection():
        db.database.drop_tables(models.MODELS, safe=True)  # our own throw-away database
    models.migrate()
    models.migrate()  # idempotent
    yield app
    db.database.close_all()


def test_keys_and_chat_on_postgres(pg_app):
    client = pg_app.test_client()
    master = {"Authorization": "Bearer sk-master-test"}
    created = client.post("/admin/keys", json={"models": ["mocky"], "metadata": {"a": [1, 2]}}, headers=master)
    assert created.status_code == 201
    key = created.get_json()["key"]
    resp = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "mocky", "messages": [{"role": "user", "content": "pg"}]})
    assert resp.status_code == 200
    read = client.get(f"/admin/keys/{created.get_json()['id']}", headers=master).get_json()
    assert read["metadata"] == {"a": [1, 2]} and read["models"] == ["mocky"]
    assert keys.KeyStore.lookup(key).key_id == created.get_json()["id"]


def test_readiness_checks_postgres_and_redis(pg_app):
    ready = pg_app.test_client().get("/health/readiness")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "database": "ok", "redis": "ok"}


def test_readiness_fails_when_redis_is_down(tmp_path):
    app = create_app(base_config(tmp_path, redis_url="redis://127.0.0.1:1/0"))
    models.migrate()
    resp = app.test_client().get("/health/readiness")
    assert resp.status_code == 503
    assert resp.get_json()["error"]["type"] == "service_unavailable"


def test_worker_runs_rq_jobs_from_the_batch_queue(tmp_path):
    """`deltallm worker` is a real RQ worker on Redis: it takes a job from the queue and runs it."""
    import subprocess
    import sys

    from redis import Redis
    from rq import Queue

    import uuid
    redis = Redis.from_url(REDIS_URL)
    name = f"deltallm-test-{uuid.uuid4().hex[:8]}"  # a queue of our own: nobody else's jobs are touched
    queue = Queue(name, connection=redis)
    job = queue.enqueue("json.dumps", {"ran": True})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings: {{redis_url: '{REDIS_URL}', database_url: '{tmp_path / 'w.db'}'}}\n")
    try:
        result = subprocess.run([sys.executable, "-m", "deltallm.cli", "worker", "--burst", "--queue", name,
                                 "--config", str(cfg)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        job.refresh()
        assert job.get_status() == "finished" and job.return_value() == '{"ran": true}'
    finally:
        job.delete()
        queue.delete(delete_jobs=True)


def test_worker_without_redis_is_a_config_error(tmp_path):
    import subprocess
    import sys
    cfg = tmp_path / "config.yaml"
    cfg.write_text("general_settings: {}\n")
    result = subprocess.run([sys.executable, "-m", "deltallm.cli", "worker", "--burst", "--config", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "redis_url" in result.stderr and "Traceback" not in result.stderr
