"""GET /openapi.json: every registered route is in it (with its methods), unauthenticated, each operation
answering errors with the OpenAI envelope, request bodies from the marshmallow schemas."""
import re

import pytest

from deltallm import create_app, models
from deltallm.schemas.openapi import OPERATIONS, UNDOCUMENTED
from tests.conftest import base_config


@pytest.fixture
def full_app(tmp_path):
    """Every optional route group registered (files and batches)."""
    app = create_app(base_config(tmp_path, embeddings_batch_enabled=True))
    models.migrate()
    return app


def document(app):
    resp = app.test_client().get("/openapi.json")  # no key
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def test_every_registered_route_is_documented(full_app):
    doc = document(full_app)
    assert doc["openapi"].startswith("3.1")
    rules = [r for r in full_app.url_map.iter_rules() if r.endpoint not in UNDOCUMENTED]
    assert len(rules) > 50
    for rule in rules:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (method, rule.rule)
    documented = sum(len(ops) for ops in doc["paths"].values())
    assert documented == sum(len(r.methods - {"HEAD", "OPTIONS"}) for r in rules)
    # no entry in the operation table outlives its route
    assert {r.endpoint for r in rules} == set(OPERATIONS)


def test_operations_have_the_error_envelope_security_and_request_schemas(full_app):
    doc = document(full_app)
    error = doc["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["message", "type", "param", "code"]
    ids = set()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            ids.add(op["operationId"])
            default = op["responses"]["default"]["content"]["application/json"]["schema"]
            assert "#/components/schemas/Error" in str(default), (method, path)
            assert op["security"] == ([] if path.startswith("/health") or path == "/openapi.json"
                                      else [{"bearer": []}])
    assert len(ids) == sum(len(ops) for ops in doc["paths"].values())  # operation ids are unique
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    props = doc["components"]["schemas"]["ChatRequest"]
    assert set(props["required"]) == {"model", "messages"}
    assert props["properties"]["temperature"] == {"type": ["number", "null"], "minimum": 0, "maximum": 2}
    assert props["properties"]["n"]["type"] == ["integer", "null"]
    assert props["properties"]["stop"] == {}  # a string or an array of strings: not narrowed
    assert doc["components"]["schemas"]["BatchCreate"]["additionalProperties"] is False
    upload = doc["paths"]["/v1/files"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["required"] == ["file", "purpose"]


def test_routes_follow_the_config(app):
    """Without batches enabled, /v1/files and /v1/batches are unknown routes, and not documented."""
    doc = document(app)
    assert "/v1/chat/completions" in doc["paths"] and "/v1/files" not in doc["paths"]
    assert "/openapi.json" in doc["paths"] and "/metrics" not in doc["paths"]
