"""Shared fixtures: an app on a temporary SQLite file, keys, a `responses` upstream mock, and the
fake upstream process (tests/fakes/server.py) for tests that need real HTTP."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlparse

import pytest
import requests
import responses

from deltallm import create_app, keys, models

ROOT = pathlib.Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-master-test"
UPSTREAM = "https://upstream.test/v1"
# The services the tests may use come from test-only variables: DATABASE_URL and REDIS_URL are the
# server's and may point at real data. Those are also taken out of the environment so that they do
# not override (as DeltaLLM's env overrides would) the database and Redis each test app is given.
REDIS_URL = os.environ.get("DELTALLM_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
POSTGRES_URL = os.environ.get("DELTALLM_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
for _name in ("DATABASE_URL", "REDIS_URL", "DELTALLM_MASTER_KEY", "DELTALLM_CONFIG_PATH"):
    os.environ.pop(_name, None)


def base_config(tmp_path, **general):
    return {
        "model_list": [
            {"model_name": "gpt-4o-mini",
             "deltallm_params": {"model": "openai/gpt-4o-mini", "api_base": UPSTREAM,
                                 "api_key": "upstream-secret"}},
            {"model_name": "grouped",
             "deltallm_params": {"model": "openai/a", "api_base": UPSTREAM, "api_key": "upstream-secret"}},
            {"model_name": "grouped",
             "litellm_params": {"model": "groq/b", "api_base": "https://groq.test/v1",
                                "api_key": "groq-secret"}},
            {"model_name": "mocky", "deltallm_params": {"model": "mock/mock-1"}},
        ],
        "router_settings": {"num_retries": 2},
        "general_settings": {"master_key": MASTER_KEY,
                             "database_url": str(tmp_path / "test.db"), **general},
    }


@pytest.fixture(autouse=True)
def close_gateways(monkeypatch):
    """Each test's gateways stop their background work when the test ends: a usage writer left running
    would flush its rows into the next test's database (the Peewee database is process-wide)."""
    from deltallm.gateway import Gateway
    made = []
    init = Gateway.__init__

    def tracked_init(self, *args, **kwargs):
        made.append(self)
        init(self, *args, **kwargs)
    monkeypatch.setattr(Gateway, "__init__", tracked_init)
    yield
    for gateway in made:
        gateway.close()


@pytest.fixture
def config(tmp_path):
    return base_config(tmp_path)


@pytest.fixture
def app(config):
    app = create_app(config)
    app.config["TESTING"] = True
    models.migrate()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def master_key():
    return MASTER_KEY


@pytest.fixture
def master(master_key):
    return {"Authorization": f"Bearer {master_key}"}


@pytest.fixture
def api_key(app):
    """A virtual key with no model restriction."""
    return keys.create_key(name="test")[1]


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def upstream():
    """Mocks every outgoing `requests` call; an unexpected one fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url, proc, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up: {log.read_text()[-3000:]}")


def stop(proc, quick=False):
    """SIGTERM; `quick` sends gunicorn's quick-shutdown signal instead of waiting out idle keep-alives."""
    proc.send_signal(signal.SIGINT if quick else signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def upstream_url(tmp_path_factory):
    """Base URL of one fake upstream process speaking every provider's wire format."""
    port = free_port()
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.server", str(port)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/_requests", proc, log)
    yield url
    stop(proc)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3-protocol server (moto's server mode) for this run: {endpoint_url, credentials, region}."""
    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/moto-api/", proc, log)
    yield {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "testing",
           "aws_secret_access_key": "testing"}
    stop(proc)


@pytest.fixture
def s3_bucket(s3_server):
    """A new bucket on the test S3 server; its settings as general_settings.files_storage takes them."""
    import boto3
    name = f"deltallm-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", **s3_server).create_bucket(Bucket=name)
    return {"type": "s3", "bucket": name, "prefix": "files/", **s3_server}


@pytest.fixture(scope="session")
def pg_url():
    """A throw-away PostgreSQL database created on DELTALLM_TEST_DATABASE_URL's server for this run and
    dropped after it: the tests never touch a database they did not create."""
    import psycopg2
    name = f"deltallm_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield urlparse(POSTGRES_URL)._replace(path=f"/{name}").geturl()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is a failed run: the whole suite must run on a fresh clone and in CI."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line(f"FAILED: {len(skipped)} tests were skipped; the suite must run whole", red=True)
        session.exitstatus = 1
