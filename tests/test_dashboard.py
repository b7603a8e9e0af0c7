"""`deltallm dashboard`: rq-dashboard (the `dashboard` extra) started on the configured Redis lists a job
enqueued on the batch queue."""
import subprocess
import sys
import uuid

import pytest
import requests
from redis import Redis
from rq import Queue

from deltallm import cli
from tests.conftest import REDIS_URL, ROOT, free_port, stop, wait_until_up


@pytest.fixture
def dashboard(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings:\n  redis_url: {REDIS_URL}\n  database_url: {tmp_path / 'd.db'}\n")
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "deltallm.cli", "dashboard", "--config", str(cfg),
                                 "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/", proc, log)
        yield url, log
    finally:
        stop(proc)


@pytest.fixture
def batch_job():
    """A job on the batch queue (a harmless function: a batch worker running the tests may pick it up)."""
    queue = Queue(cli.BATCH_QUEUE, connection=Redis.from_url(REDIS_URL))
    job = queue.enqueue("deltallm.cli.split", "a,b", description=f"dashboard test {uuid.uuid4().hex}")
    yield job
    job.delete()


def test_the_dashboard_lists_a_batch_job(dashboard, batch_job):
    url, log = dashboard
    assert "rq-dashboard on http://127.0.0.1:" in log.read_text()
    queues = requests.get(f"{url}/0/data/queues.json", timeout=10).json()["queues"]
    assert cli.BATCH_QUEUE in [q["name"] for q in queues]
    page = requests.get(f"{url}/0/view/jobs/{cli.BATCH_QUEUE}/queued/8/asc/1", timeout=10)
    assert page.status_code == 200 and cli.BATCH_QUEUE in page.text
    listed = []
    for registry in ("queued", "finished"):  # finished if a worker took it meanwhile
        data = requests.get(f"{url}/0/data/jobs/{cli.BATCH_QUEUE}/{registry}/1000/asc/1.json", timeout=10).json()
        listed += [job["id"] for job in data["jobs"]]
    assert batch_job.id in listed
    job = requests.get(f"{url}/0/data/job/{batch_job.id}.json", timeout=10).json()
    assert job["description"] == batch_job.description and job["origin"] == cli.BATCH_QUEUE


def test_the_dashboard_needs_redis(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings:\n  database_url: {tmp_path / 'd.db'}\n")
    assert cli.main(["dashboard", "--config", str(cfg)]) == 1
    assert "general_settings.redis_url: the dashboard shows RQ's queues" in capsys.readouterr().err
