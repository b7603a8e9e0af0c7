"""Schemathesis against the real gunicorn server, driven by the server's own /openapi.json: for a
bounded number of generated requests per operation (master key, mock models, no network), no 5xx,
every error in the OpenAI envelope, and every answer's status, content type and body as documented."""
import collections
import itertools

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from tests.e2e.conftest import MASTER, running_gateway

EXAMPLES = 16  # per operation: ~100 operations, well under a minute on two busy cores
CONFIG = f"""
model_list:
  - model_name: mocky
    deltallm_params: {{model: mock/mock-1}}
  - model_name: mock-embed
    deltallm_params: {{model: mock/mock-embed}}
    model_info: {{mode: embedding}}
general_settings:
  master_key: {MASTER}
  database_url: {{db}}
  embeddings_batch_enabled: true
  cache: {{type: local}}
"""
# the gateway must not reach the network: any upstream other than the mock (a fuzzed admin deployment,
# a fuzzed MCP server) goes through a proxy that refuses connections
NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
              "no_proxy": ""}


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_gateway(CONFIG.replace("{db}", str(tmp / "fuzz.db")), tmp, **NO_NETWORK) as url:
        yield url


def error_envelope(ctx, response, case):
    """Every error is OpenAI's envelope (or, on /mcp, a JSON-RPC error: MCP's own transport)."""
    if response.status_code < 400:
        return None
    body = orjson.loads(response.content)
    if case.path == "/mcp" and body.get("jsonrpc") == "2.0" and isinstance(body.get("error"), dict):
        return None
    error = body.get("error")
    assert set(body) == {"error"} and isinstance(error, dict), f"not the error envelope: {body}"
    assert isinstance(error.get("message"), str) and isinstance(error.get("type"), str), body
    assert set(error) >= {"message", "type", "param", "code"}, body
    return None


PROMPTS = {"chat/completions": {"messages": [{"role": "user", "content": "hi"}]}, "completions": {"prompt": "hi"},
           "responses": {"input": "hi"}, "embeddings": {"input": "hi"}}


def with_known_model(case, known):
    """Half the generated bodies become a plain request to a configured model (the document leaves
    messages, prompts and inputs open: they take many shapes), so answers, not only errors, are checked;
    whether to stream is kept from the generated body."""
    if known and isinstance(case.body, dict) and "model" in case.body:
        body = {"model": "mock-embed" if "embeddings" in case.path else "mocky"}
        body.update(next((fields for end, fields in PROMPTS.items() if case.path.endswith(end)), {}))
        if case.body.get("stream") is True:
            body["stream"] = True
        case.body = body
    return case


def test_api_answers_as_documented(fuzzed_gateway):
    doc = requests.get(fuzzed_gateway + "/openapi.json", timeout=10).json()
    operations = [result.ok() for result in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in doc["paths"].values())
    failures, statuses = {}, collections.Counter()

    def seen(ctx, response, case):
        statuses[case.path, response.status_code] += 1

    # one Hypothesis run per operation, all of them run: the report lists every operation that failed
    # (schemathesis' own pytest parametrization needs a pytest older than this suite's)
    for operation in operations:
        # valid requests (every other one made to name a configured model: Hypothesis' booleans lean
        # towards False) and invalid ones (wrong types, missing fields: the error paths, where a 500 hides)
        turn = itertools.count()
        cases = st.one_of(operation.as_strategy().map(lambda case: with_known_model(case, next(turn) % 2 == 0)),
                          operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(base_url=fuzzed_gateway, headers={"Authorization": f"Bearer {MASTER}"},
                                   timeout=30, checks=[not_a_server_error, status_code_conformance,
                                                       content_type_conformance, response_schema_conformance,
                                                       error_envelope, seen])
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - schemathesis raises exception groups; reported below
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            failures[operation.label] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    # the run reached the answers, not only the validation errors
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/health/readiness"):
        assert any(200 <= status < 300 for (where, status) in statuses if where == path), \
            (path, sorted(item for item in statuses.items() if item[0][0] == path))
    assert sum(statuses.values()) >= EXAMPLES * len(operations) // 2
