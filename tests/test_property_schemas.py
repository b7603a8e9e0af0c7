"""Generated JSON at every endpoint that takes a body: never a 5xx, every 4xx the OpenAI envelope.

Bodies are arbitrary JSON (wrong types, deep nesting, huge and negative numbers, NUL and other
unicode), valid bodies with one part mutated, and valid bodies with a known field set to anything.
They go through the Flask test client to the `mocky` mock model and to an OpenAI-compatible model
whose upstream (`responses`) always returns a fixed valid reply. Deterministic (derandomized); for
a longer random search set DELTALLM_TEST_EXAMPLES (e.g. 5000: that many examples, a new seed each run).
"""
import json
import logging
import os
import re

import orjson
import pytest
import responses
from hypothesis import HealthCheck, given, settings, strategies as st
from marshmallow import Schema, ValidationError, validates

from deltallm import create_app, db, models
from deltallm.schemas.admin import key_create
from deltallm.schemas.chat import chat_request
from deltallm.schemas.common import FlatSchema, StrictString
from deltallm.schemas.completions import completion_request
from deltallm.schemas.embeddings import embedding_request, image_request, speech_request
from deltallm.schemas.responses import responses_request
from tests.conftest import MASTER_KEY, UPSTREAM, base_config
from tests.helpers import chunk, completion, sse, usage_chunk

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
EXAMPLES = int(os.environ.get("DELTALLM_TEST_EXAMPLES") or 0)
SETTINGS = settings(max_examples=EXAMPLES or 150, deadline=None, derandomize=not EXAMPLES, database=None,
                    suppress_health_check=list(HealthCheck))
MODELS = ["mocky", "gpt-4o-mini"]

EDGES = [None, True, False, 0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 64 - 1, -2 ** 63 - 1, 1e300, -1e300, 0.5, 1e-300,
         "", "\x00", "a\x00b", "x" * 300, "\ud7ff\U0010ffff", "30d\n", [], {}, [None], {"": None},
         [[[[[]]]]], {"type": ["text"]}, {"type": {}}, [1, "a", None]]
# edge values are drawn as often as all other scalars together
scalars = st.one_of(st.sampled_from(EDGES), st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

CHAT_BODY = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "hi"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                                 {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
                                 {"type": "file", "file": {"file_id": "file_1"}}]},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": "auto", "n": 1, "max_tokens": 5, "temperature": 0.5, "seed": 1, "stop": ["\n"],
    "stream": False, "response_format": {"type": "text"}, "metadata": {"a": "b"}}
ENDPOINTS = {
    "/v1/chat/completions": (chat_request, CHAT_BODY),
    "/v1/completions": (completion_request, {"prompt": ["a", "b"], "n": 1, "max_tokens": 5, "stream": False,
                                             "stream_options": {"include_usage": True}}),
    "/v1/responses": (responses_request, {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                               {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                  {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c", "output": "x"}],
        "instructions": "be brief", "max_output_tokens": 20, "metadata": {"a": "b"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}], "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"}, "stream": False}),
    "/v1/embeddings": (embedding_request, {"input": ["a", "b"], "dimensions": 4, "encoding_format": "float"}),
    "/v1/images/generations": (image_request, {"prompt": "a cat", "n": 1, "size": "256x256",
                                               "response_format": "url"}),
    "/v1/audio/speech": (speech_request, {"input": "hi", "voice": "alloy", "response_format": "mp3",
                                          "speed": 1.0}),
}
KEY_BODY = {"name": "k", "models": ["mocky"], "mcp_servers": ["s"], "metadata": {"team": {"a": [1]}},
            "max_budget": 10.5, "budget_duration": "30d", "rpm_limit": 10, "tpm_limit": 1000,
            "max_parallel_requests": 2, "expires_at": "2030-01-01T00:00:00Z"}


def with_mcp(config):
    """The MCP server KEY_BODY names (a key's allowlist may only name known servers); never called."""
    return dict(config, mcp_servers={"s": {"url": "https://mcp.test/mcp"}})


def upstream_reply(request):
    """A fixed valid reply for every OpenAI endpoint the gateway forwards to."""
    path = request.url.split("/v1", 1)[1]
    if path == "/chat/completions":
        if json.loads(request.body).get("stream"):
            body = sse(chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({}, "stop"),
                       usage_chunk())
            return 200, {"Content-Type": "text/event-stream"}, body
        return 200, {"Content-Type": "application/json"}, orjson.dumps(completion())
    if path == "/embeddings":
        return 200, {}, orjson.dumps({"object": "list", "model": "e",
                                      "usage": {"prompt_tokens": 1, "total_tokens": 1},
                                      "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]})
    if path == "/images/generations":
        return 200, {}, orjson.dumps({"created": 1, "data": [{"url": "https://img.test/1.png"}]})
    if path == "/audio/speech":
        return 200, {"Content-Type": "audio/mpeg"}, b"ID3fake"
    return 404, {}, b'{"error": {"message": "no such route"}}'


class Errors(logging.Handler):
    """Collects every ERROR the gateway logs: an unexpected exception is logged even when a stream
    has already answered 200."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def errors():
    handler = Errors()
    logging.getLogger("deltallm").addHandler(handler)
    yield handler
    logging.getLogger("deltallm").removeHandler(handler)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, errors):
    """An app on SQLite whose OpenAI-compatible upstream always answers well."""
    app = create_app(with_mcp(base_config(tmp_path_factory.mktemp("property"))))
    app.config["TESTING"] = True
    models.migrate()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as upstream:
        upstream.add_callback(responses.POST, re.compile(re.escape(UPSTREAM) + "/.*"), upstream_reply)
        yield app.test_client(), errors, db.database.obj


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin_gateway(request, gateway, errors, tmp_path_factory):
    """The admin API on SQLite (the gateway above) and on PostgreSQL, which is stricter."""
    if request.param == "sqlite":
        yield gateway
        return
    app = create_app(with_mcp(base_config(tmp_path_factory.mktemp("property-pg"),
                                          database_url=request.getfixturevalue("pg_url"))))
    with db.connection():
        db.database.drop_tables(models.MODELS, safe=True)  # our own throw-away database
    models.migrate()
    yield app.test_client(), errors, db.database.obj
    db.database.obj.close_all()


def send(gateway, method, path, body):
    client, errors, database = gateway
    db.database.initialize(database)  # the database is process-wide; several apps take turns here
    errors.records.clear()
    data = json.dumps(body, allow_nan=False)
    resp = client.open(path, method=method, data=data, headers=MASTER, content_type="application/json")
    payload = resp.get_data()  # streams run to their end here
    assert resp.status_code < 500, (resp.status_code, payload[:500], data[:500])
    assert not errors.records, (errors.records[0].getMessage(), data[:500])
    if resp.status_code >= 400:
        err = orjson.loads(payload)["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and isinstance(err["type"], str)
        assert err["param"] is None or isinstance(err["param"], str)
        assert err["code"] is None or isinstance(err["code"], str)
    elif resp.mimetype == "text/event-stream":
        assert b'"server_error"' not in payload, payload[-500:]
    return resp


def locations(value, at=()):
    """Every path into a JSON value (the value itself first)."""
    yield at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from locations(item, at + (key,))


def mutate(data, body):
    """The body with one place replaced, removed, or given a new key."""
    body = json.loads(json.dumps(body))
    at = data.draw(st.sampled_from(list(locations(body))[1:]))
    parent = body
    for step in at[:-1]:
        parent = parent[step]
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete":
        del parent[at[-1]]
    elif action == "add" and isinstance(parent[at[-1]], dict):
        parent[at[-1]][data.draw(st.text(max_size=8))] = data.draw(json_values)
    else:
        parent[at[-1]] = data.draw(json_values)
    return body


def field_of(data, schema, body):
    """The body with one of the schema's own fields set to anything."""
    name = data.draw(st.sampled_from(sorted(schema.fields)))
    return dict(body, **{name: data.draw(json_values)})


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
@pytest.mark.parametrize("model", MODELS)
@SETTINGS
@given(data=st.data())
def test_model_endpoints_never_fail(gateway, path, model, data):
    schema, valid = ENDPOINTS[path]
    valid = dict(valid, model=model)
    how = data.draw(st.sampled_from(["mutate", "mutate", "field", "field", "any"]))
    if how == "mutate":
        body = mutate(data, valid)
    elif how == "field":
        body = field_of(data, schema, valid)
    else:
        body = data.draw(json_values | st.dictionaries(st.sampled_from(sorted(schema.fields)), json_values))
    if data.draw(st.booleans()) and isinstance(body, dict):
        body["stream"] = True
    send(gateway, "POST", path, body)


def test_the_valid_bodies_are_valid(gateway):
    """The mutations start from bodies the gateway accepts."""
    for path, (_schema, valid) in ENDPOINTS.items():
        for model in MODELS:
            if "mocky" == model and path in ("/v1/images/generations", "/v1/audio/speech"):
                continue  # the mock offers chat and embeddings only
            assert send(gateway, "POST", path, dict(valid, model=model)).status_code == 200, path
    assert send(gateway, "POST", "/admin/keys", KEY_BODY).status_code == 201


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@SETTINGS
@given(data=st.data())
def test_admin_keys_never_fail(admin_gateway, method, data):
    gateway, path = admin_gateway, "/admin/keys"
    if method == "PATCH":
        created = send(gateway, "POST", path, {})
        path = f"{path}/{created.get_json()['id']}"
    how = data.draw(st.sampled_from(["mutate", "field", "field", "any"]))
    if how == "mutate":
        body = mutate(data, KEY_BODY)
    elif how == "field":
        body = field_of(data, key_create, KEY_BODY)
    else:
        body = data.draw(json_values | st.dictionaries(st.sampled_from(sorted(key_create.fields)), json_values))
    send(gateway, method, path, body)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(key_id=st.text(min_size=1, max_size=40))
def test_admin_key_ids_never_fail(admin_gateway, key_id):
    from urllib.parse import quote
    client, _, database = admin_gateway
    db.database.initialize(database)
    for method in ("GET", "PATCH", "DELETE"):
        resp = client.open(f"/admin/keys/{quote(key_id, safe='')}", method=method, headers=MASTER,
                           json={} if method == "PATCH" else None)
        assert resp.status_code in (404, 405), (method, key_id, resp.data)


@pytest.mark.parametrize("path", sorted(ENDPOINTS))
def test_every_field_with_every_edge_value(gateway, path):
    """Exhaustively, besides the random search: each of the schema's fields set to each edge value."""
    every_field_with_every_edge_value(gateway, path)


@pytest.mark.parametrize("path", ["/admin/keys", "PATCH /admin/keys"])
def test_every_key_field_with_every_edge_value(admin_gateway, path):
    every_field_with_every_edge_value(admin_gateway, path)


def every_field_with_every_edge_value(gateway, path):
    method, _, path = path.rpartition(" ")
    if method == "PATCH":
        path = f"{path}/{send(gateway, 'POST', path, {}).get_json()['id']}"
    schema, valid = ENDPOINTS.get(path, (key_create, KEY_BODY))
    for model in MODELS if path in ENDPOINTS else [None]:
        body = valid if model is None else dict(valid, model=model)
        for name in sorted(schema.fields):
            for value in EDGES:
                send(gateway, method or "POST", path, dict(body, **{name: value}))


RICH_SCHEMA = {"type": "object", "required": ["a"], "$defs": {"D": {"type": "number"}}, "properties": {
    "a": {"type": ["string", "null"], "enum": ["x", None], "format": "date-time"},
    "b": {"type": "array", "items": {"$ref": "#/$defs/D"}, "minItems": 1},
    "c": {"allOf": [{"properties": {"d": {"type": "integer"}}, "required": ["d"]}]},
    "e": {"anyOf": [{"type": "null"}, {"const": 3}]}}}
NATIVE_BODY = json.loads(json.dumps(dict(
    CHAT_BODY, model="m", messages=CHAT_BODY["messages"][:1] + [{"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    + CHAT_BODY["messages"][2:], tool_choice={"type": "function", "function": {"name": "f"}},
    response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": RICH_SCHEMA, "strict": True}},
    tools=[{"type": "function", "function": {"name": "f", "parameters": RICH_SCHEMA}}])))


@SETTINGS
@given(data=st.data())
def test_native_translators_never_fail(data):
    """Anthropic, Gemini and Bedrock read what the chat schema let through: a request the schema
    accepts becomes their request or a GatewayError (a 4xx), never another exception."""
    from deltallm.errors import GatewayError
    from deltallm.providers import anthropic_request, bedrock_request, gemini_request
    from deltallm.router.deployment import Deployment
    from deltallm.schemas.common import load
    body = mutate(data, NATIVE_BODY) if data.draw(st.booleans()) else field_of(data, chat_request, NATIVE_BODY)
    try:
        body = load(chat_request, orjson.loads(json.dumps(body)))  # as the gateway reads it
    except (GatewayError, orjson.JSONDecodeError):
        return
    for module, model in ((anthropic_request, "anthropic/claude-3-5-haiku-latest"),
                          (gemini_request, "gemini/gemini-2.0-flash"),
                          (bedrock_request, "bedrock/anthropic.claude-3")):
        try:
            orjson.dumps(module.to_request(Deployment("m", {"model": model, "api_key": "k"}), body))
        except GatewayError as exc:
            assert 400 <= exc.status < 500, exc


FLAT = sorted(path for path, (schema, _) in ENDPOINTS.items() if getattr(schema, "flat", False))


def marshmallow_load(schema, body):
    """What marshmallow's own Schema.load makes of a body: (data, None) or (None, error messages)."""
    try:
        return Schema.load(schema, body), None
    except ValidationError as exc:
        return None, exc.messages


def flat_load(schema, body):
    try:
        return schema.load(body), None
    except ValidationError as exc:
        return None, exc.messages


def test_the_hot_schemas_are_flat():
    assert set(FLAT) >= {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


@pytest.mark.parametrize("path", FLAT)
@SETTINGS
@given(data=st.data())
def test_flat_schemas_load_exactly_as_marshmallow_does(path, data):
    """FlatSchema visits only the fields a body holds; marshmallow visits them all. Same data out,
    same errors (every one, with the same paths and messages), for any body."""
    schema, valid = ENDPOINTS[path]
    valid = dict(valid, model="m")
    how = data.draw(st.sampled_from(["mutate", "field", "field", "any", "valid"]))
    if how == "mutate":
        body = mutate(data, valid)
    elif how == "field":
        body = field_of(data, schema, valid)
    elif how == "any":
        body = data.draw(st.dictionaries(st.sampled_from(sorted(schema.fields)) | st.text(max_size=6), json_values))
    else:
        body = valid
    assert flat_load(schema, body) == marshmallow_load(schema, body)


def test_a_flat_schema_with_hooks_is_loaded_by_marshmallow():
    class Hooked(FlatSchema):
        name = StrictString(required=True)

        @validates("name")
        def not_bob(self, value, **kwargs):
            if value == "bob":
                raise ValidationError("not bob")

    schema = Hooked()
    assert schema.flat is False
    assert flat_load(schema, {"name": "bob"}) == (None, {"name": ["not bob"]})
    assert flat_load(schema, {"name": "al", "extra": 1}) == ({"name": "al", "extra": 1}, None)
    assert flat_load(schema, {}) == (None, {"name": ["Missing data for required field."]})


def test_a_flat_schema_with_defaults_is_loaded_by_marshmallow():
    class Defaulted(FlatSchema):
        name = StrictString(required=True)
        size = StrictString(load_default="m")

    schema = Defaulted()
    assert schema.flat is False
    assert flat_load(schema, {"name": "al"}) == ({"name": "al", "size": "m"}, None)
