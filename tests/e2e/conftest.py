"""Real processes: our fake upstream, and the gateway under gunicorn with gevent workers."""
import contextlib
import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT, free_port, stop, wait_until_up

MASTER = "sk-e2e-master"


def gateway_config(upstream, db_path):
    return f"""
model_list:
  - model_name: gpt-4o-mini
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream}/v1, api_key: upstream-secret}}
  - model_name: claude
    deltallm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: {upstream}/v1, api_key: upstream-secret}}
  - model_name: gemini
    deltallm_params: {{model: gemini/gemini-2.0-flash, api_base: {upstream}/v1beta, api_key: upstream-secret}}
  - model_name: bedrock
    deltallm_params: {{model: bedrock/anthropic.claude-3-haiku-20240307-v1:0, api_base: {upstream},
                       aws_region_name: us-east-1, aws_access_key_id: AKIDTEST, aws_secret_access_key: SECRET}}
  - model_name: gemini-thinking
    deltallm_params: {{model: gemini/gemini-3-pro-preview, api_base: {upstream}/v1beta, api_key: upstream-secret}}
  - model_name: bedrock-thinking
    deltallm_params: {{model: bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0, api_base: {upstream},
                       aws_region_name: us-east-1, aws_access_key_id: AKIDTEST, aws_secret_access_key: SECRET}}
  - model_name: gemini-retry
    deltallm_params: {{model: gemini/gemini-2.5-flash, api_base: {upstream}/v1beta, api_key: upstream-secret}}
  - model_name: bedrock-retry
    deltallm_params: {{model: bedrock/meta.llama3-70b-instruct-v1:0, api_base: {upstream},
                       aws_region_name: us-east-1, aws_access_key_id: AKIDTEST, aws_secret_access_key: SECRET}}
  - model_name: azure
    deltallm_params: {{model: azure/gpt4o-deploy, api_base: {upstream}, api_version: 2024-10-21, api_key: upstream-secret}}
  - model_name: misconfigured
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream}/v1, api_key: wrong-secret}}
  - model_name: mocky
    deltallm_params: {{model: mock/mock-1, mock_chunk_delay_ms: 5}}
general_settings:
  master_key: {MASTER}
  database_url: {db_path}
"""


class GatewayUrl(str):
    """The gateway's base URL, which also carries its gunicorn master process (`proc`) and log (`log`)."""
    proc = log = None


@contextlib.contextmanager
def running_gateway(config_text, tmp, **env_overrides):
    """The PaaS path: plain gunicorn with the repository's gunicorn.conf.py (migrates in the master).
    Yields a GatewayUrl: tests that must signal the master or read its log find them on it."""
    cfg = tmp / "config.yaml"
    cfg.write_text(config_text)
    port = free_port()
    env = {**os.environ, "DELTALLM_CONFIG_PATH": str(cfg), "WEB_CONCURRENCY": "2", **env_overrides}
    env.pop("DELTALLM_MASTER_KEY", None)
    log = tmp / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                 f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = GatewayUrl(f"http://127.0.0.1:{port}")
    url.proc, url.log = proc, log
    try:
        wait_until_up(url + "/health/readiness", proc, log)
        yield url
    finally:
        if proc.poll() is None:
            stop(proc, quick=True)


@pytest.fixture(scope="session")
def gateway_url(upstream_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gateway")
    with running_gateway(gateway_config(upstream_url, tmp / "e2e.db"), tmp) as url:
        yield url


@pytest.fixture
def client(gateway_url):
    import openai
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key=MASTER, max_retries=0, timeout=30)


@pytest.fixture
def upstream_log(upstream_url):
    """Requests the fake upstream received during the test."""
    requests.delete(upstream_url + "/_requests", timeout=5)
    return lambda: requests.get(upstream_url + "/_requests", timeout=5).json()
