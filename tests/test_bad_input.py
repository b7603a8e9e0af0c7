"""Bad input is a 400 naming the field, never a 500; one request cannot fan out without limit (issue 6)."""
import json

import pytest

from deltallm import create_app, db, models
from tests.conftest import UPSTREAM, base_config
from tests.helpers import completion
from tests.test_errors import error_of

CHAT = "/v1/chat/completions"
URL = f"{UPSTREAM}/chat/completions"
BIG = 2 ** 64  # orjson reads it as a float that is an integer; orjson cannot write it back


def post_raw(client, headers, path, text):
    """A body written by hand: JSON numbers Python's json module would not produce."""
    return client.post(path, data=text, headers=headers, content_type="application/json")


def chat(*messages, model="mocky", **fields):
    return {"model": model, "messages": list(messages) or [{"role": "user", "content": "hi"}], **fields}


def user(content):
    return {"role": "user", "content": content}


def nested(depth):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


# -- item 7: wrongly-typed nested fields ------------------------------------------------------------
@pytest.mark.parametrize("body,param", [
    (chat({"role": ["user"], "content": "x"}), "messages[0].role"),
    (chat({"role": {"a": 1}, "content": "x"}), "messages[0].role"),
    (chat(user([{"type": ["text"], "text": "x"}])), "messages[0].content[0].type"),
    (chat(user([{"type": {"t": "text"}, "text": "x"}])), "messages[0].content[0].type"),
    (chat(user([{"type": "input_audio", "input_audio": "abc"}])), "messages[0].content[0].input_audio"),
    (chat(user([{"type": "input_audio", "input_audio": {"data": 5, "format": "wav"}}])),
     "messages[0].content[0].input_audio.data"),
    (chat(user([{"type": "input_audio", "input_audio": {"data": "AAAA"}}])),
     "messages[0].content[0].input_audio.format"),
    (chat(user([{"type": "file", "text": 5}])), "messages[0].content[0].file"),
    (chat(user([{"type": "file", "file": "abc"}])), "messages[0].content[0].file"),
    (chat(user([{"type": "file", "file": {"file_data": ["x"]}}])), "messages[0].content[0].file.file_data"),
    (chat(user([{"type": "image_url", "image_url": "http://x"}])), "messages[0].content[0].image_url"),
    (chat(user([{"type": "image_url", "image_url": {"url": "http://x", "detail": []}}])),
     "messages[0].content[0].image_url.detail"),
    (chat({"role": "assistant", "content": [{"type": "refusal", "refusal": 1}]}),
     "messages[0].content[0].refusal"),
    (chat(max_tokens=1e300), "max_tokens"),
    (chat(max_completion_tokens=1e300), "max_completion_tokens"),
    (chat(seed=-1e300), "seed"),
    (chat(n=129), "n"),
    (chat(extra=nested(200)), "extra"),
    (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": nested(300)}}]), "tools"),
])
@pytest.mark.parametrize("model", ["mocky", "gpt-4o-mini"])
def test_wrong_shapes_in_chat_are_400_naming_the_field(client, master, upstream, body, param, model):
    upstream.post(URL, json=completion())
    err = error_of(client.post(CHAT, json=dict(body, model=model), headers=master), 400)
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    assert not upstream.calls


@pytest.mark.parametrize("field", ["seed", "max_tokens"])
def test_integers_beyond_64_bits_are_400(client, master, upstream, field):
    text = json.dumps(chat(model="gpt-4o-mini"))[:-1] + f', "{field}": {BIG}}}'
    err = error_of(post_raw(client, master, CHAT, text), 400)
    assert err["param"] == field and not upstream.calls


def test_the_widest_json_integers_pass_through_unknown_fields(client, master, upstream):
    """orjson reads any JSON integer it cannot write back as a float, so pass-through is safe."""
    upstream.post(URL, json=completion())
    extra = f'"x_big": {BIG}, "x_max": {BIG - 1}, "seed": {2**63 - 1}'
    text = json.dumps(chat(model="gpt-4o-mini"))[:-1] + f", {extra}}}"
    assert post_raw(client, master, CHAT, text).status_code == 200
    sent = json.loads(upstream.calls[0].request.body)
    assert sent["x_max"] == BIG - 1 and sent["x_big"] == float(BIG) and sent["seed"] == 2 ** 63 - 1


def test_deep_but_reasonable_nesting_is_accepted(client, master):
    assert client.post(CHAT, json=chat(extra=nested(100)), headers=master).status_code == 200


def test_mock_ignores_text_of_other_types_in_parts(client, master):
    body = chat(user([{"type": "text", "text": "hi"}, {"type": "file", "file": {"file_id": "f"}, "text": 5}]))
    resp = client.post(CHAT, json=body, headers=master)
    assert resp.status_code == 200
    assert resp.get_json()["choices"][0]["message"]["content"] == "This is a mock response to: hi"


@pytest.mark.parametrize("fields,param", [
    ({"max_output_tokens": 1e300}, "max_output_tokens"),
    ({"max_tool_calls": 1e300}, "max_tool_calls"),
    ({"input": [{"role": ["user"], "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": ["input_text"], "text": "x"}]}]},
     "input[0].content[0].type"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {"p": nested(300)}}]}, "tools"),
    ({"metadata": {"k": nested(130)}}, "metadata"),
])
def test_wrong_shapes_in_responses_are_400(client, master, fields, param):
    resp = client.post("/v1/responses", json={"model": "mocky", "input": "hi", **fields}, headers=master)
    assert error_of(resp, 400)["param"] == param


def test_responses_integer_beyond_64_bits_is_400(client, master):
    text = f'{{"model": "mocky", "input": "hi", "max_output_tokens": {BIG}}}'
    assert error_of(post_raw(client, master, "/v1/responses", text), 400)["param"] == "max_output_tokens"


# -- item 6: fan-out limits -------------------------------------------------------------------------
def test_prompt_lists_are_capped_before_any_upstream_call(client, master, upstream):
    upstream.post(URL, json=completion())
    body = {"model": "gpt-4o-mini", "prompt": ["p"] * 2000}
    resp = client.post("/v1/completions", json=body, headers=master)
    err = error_of(resp, 400)
    assert err["param"] == "prompt" and "128" in err["message"]
    assert not upstream.calls


def test_prompts_times_n_is_capped(client, master, upstream):
    upstream.post(URL, json=completion())
    resp = client.post("/v1/completions", json={"model": "gpt-4o-mini", "prompt": ["p"] * 2, "n": 65},
                       headers=master)
    assert error_of(resp, 400)["param"] == "n"
    assert not upstream.calls
    ok = client.post("/v1/completions", json={"model": "mocky", "prompt": ["p"] * 128}, headers=master)
    assert ok.status_code == 200 and len(ok.get_json()["choices"]) == 128
    ok = client.post("/v1/completions", json={"model": "mocky", "prompt": "p", "n": 128}, headers=master)
    assert ok.status_code == 200 and len(ok.get_json()["choices"]) == 128


def test_max_prompts_is_configurable(tmp_path, master):
    app = create_app(base_config(tmp_path, max_prompts=3))
    models.migrate()
    client = app.test_client()
    body = {"model": "mocky", "prompt": ["a", "b", "c"]}
    assert client.post("/v1/completions", json=body, headers=master).status_code == 200
    resp = client.post("/v1/completions", json=dict(body, prompt=["a"] * 4), headers=master)
    assert error_of(resp, 400)["param"] == "prompt"
    # n on its own may still reach OpenAI's 128 with a small max_prompts
    assert client.post("/v1/completions", json={"model": "mocky", "prompt": "a", "n": 128},
                       headers=master).status_code == 200


@pytest.mark.parametrize("path,body,param", [
    ("/v1/embeddings", {"model": "mocky", "input": "x", "dimensions": 8193}, "dimensions"),
    ("/v1/embeddings", {"model": "mocky", "input": "x", "dimensions": 1e300}, "dimensions"),
    ("/v1/embeddings", {"model": "mocky", "input": ["x"] * 2049}, "input"),
    ("/v1/embeddings", {"model": "mocky", "input": ["x"] * 2048, "dimensions": 1024}, "input"),
    ("/v1/images/generations", {"model": "mocky", "prompt": "x", "n": 11}, "n"),
    ("/v1/chat/completions", chat(n=1e300), "n"),
])
def test_other_fan_out_is_capped(client, master, path, body, param):
    assert error_of(client.post(path, json=body, headers=master), 400)["param"] == param


def test_mock_embeddings_within_bounds(client, master):
    resp = client.post("/v1/embeddings", json={"model": "mocky", "input": "x", "dimensions": 8192},
                       headers=master)
    assert resp.status_code == 200 and len(resp.get_json()["data"][0]["embedding"]) == 8192


# -- item 7: admin fields, on SQLite and PostgreSQL ---------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def admin_client(request, tmp_path):
    if request.param == "sqlite":
        app = create_app(base_config(tmp_path))
    else:
        app = create_app(base_config(tmp_path, database_url=request.getfixturevalue("pg_url")))
        with db.connection():
            db.database.drop_tables(models.MODELS, safe=True)  # our own throw-away database
    models.migrate()
    yield app.test_client()
    db.database.close_all()


BAD_KEY_FIELDS = [
    ({"rpm_limit": 2 ** 31}, "rpm_limit"),
    ({"rpm_limit": 1e300}, "rpm_limit"),
    ({"tpm_limit": 2 ** 31}, "tpm_limit"),
    ({"max_parallel_requests": 2 ** 40}, "max_parallel_requests"),
    ({"max_budget": 1e300}, "max_budget"),
    ({"name": "n" * 256}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"models": ["gpt\x00"]}, "models[0]"),
    ({"models": ["m" * 256]}, "models[0]"),
    ({"mcp_servers": ["s\x00"]}, "mcp_servers[0]"),
    ({"metadata": {"team": "a\x00"}}, "metadata.team"),
    ({"metadata": {"a": [{"b\x00": 1}]}}, "metadata.a[0].b\x00"),
    ({"metadata": {"blob": "x" * 20000}}, "metadata"),
    ({"metadata": {"deep": nested(200)}}, "metadata"),
    ({"budget_duration": "1" * 20 + "d"}, "budget_duration"),
    ({"budget_duration": "30d\n"}, "budget_duration"),
    ({"budget_duration": "\u0663d"}, "budget_duration"),  # an Arabic-Indic digit
    ({"budget_duration": "30d\x00"}, "budget_duration"),
    ({"expires_at": 1e300}, "expires_at"),
    ({"expires_at": "2030-01-01\x00"}, "expires_at"),
]


@pytest.mark.parametrize("fields,param", BAD_KEY_FIELDS)
def test_bad_key_fields_are_400(admin_client, master, fields, param):
    err = error_of(admin_client.post("/admin/keys", json=fields, headers=master), 400)
    assert (err["type"], err["param"]) == ("invalid_request_error", param)
    key_id = admin_client.post("/admin/keys", json={}, headers=master).get_json()["id"]
    err = error_of(admin_client.patch(f"/admin/keys/{key_id}", json=fields, headers=master), 400)
    assert err["param"] == param


def test_bounds_of_key_fields_fit_their_columns(admin_client, master):
    # an allowlist names served models only: serve one with the longest name a key may list
    added = admin_client.post("/admin/models", json={"model_name": "m" * 255,
                                                      "deltallm_params": {"model": "mock/m"}}, headers=master)
    assert added.status_code == 201, added.data
    # durations stop at a century (999999mo would end past the year 9999)
    fields = {"name": "n" * 255, "rpm_limit": 2 ** 31 - 1, "tpm_limit": 2 ** 31 - 1,
              "max_parallel_requests": 2 ** 31 - 1, "max_budget": 1e9, "budget_duration": "1200mo",
              "metadata": {"blob": "x" * 16000, "deep": nested(100)}, "models": ["m" * 255],
              "model_rpm_limit": {"m" * 255: 2 ** 31 - 1}, "model_tpm_limit": {"m" * 255: 2 ** 31 - 1}}
    created = admin_client.post("/admin/keys", json=fields, headers=master)
    assert created.status_code == 201, created.data
    read = admin_client.get(f"/admin/keys/{created.get_json()['id']}", headers=master).get_json()
    assert {k: read[k] for k in fields} == fields


@pytest.mark.parametrize("key_id", ["ab%00cd", "%00", "x" * 300])
def test_impossible_key_ids_are_404(admin_client, master, key_id):
    for method in ("get", "patch", "delete"):
        resp = getattr(admin_client, method)(f"/admin/keys/{key_id}", headers=master,
                                             **({"json": {}} if method == "patch" else {}))
        assert error_of(resp, 404)["code"] == "not_found"
    listed = admin_client.get(f"/admin/keys?after={key_id}", headers=master)
    assert error_of(listed, 404)["code"] == "not_found"


def test_mock_reply_is_bounded_whatever_the_prompt(client, master):
    """The mock echoes the prompt: n copies of a huge prompt must not become a huge answer."""
    words = chat(user("a " * 100_000), n=128)
    resp = client.post(CHAT, json=words, headers=master)
    assert resp.status_code == 200 and len(resp.data) < 16 * 1024 * 1024
    choices = resp.get_json()["choices"]
    assert len(choices) == 128 and {c["finish_reason"] for c in choices} == {"length"}
    assert len(choices[0]["message"]["content"].split(" ")) == 1024
    one_word = client.post(CHAT, json=chat(user("a" * 1_000_000), n=128), headers=master)
    assert one_word.status_code == 200 and len(one_word.data) < 16 * 1024 * 1024
    stream = client.post(CHAT, json=dict(words, n=2, stream=True), headers=master)
    assert stream.data.count(b"data: ") < 2 * 1024 + 10


@pytest.mark.parametrize("fields,param", [
    ({"tool_choice": {"type": "function", "function": "f"}}, "tool_choice.function"),
    ({"tool_choice": {"type": "function", "function": {"name": ["f"]}}}, "tool_choice.function.name"),
    ({"tool_choice": {"type": ["function"]}}, "tool_choice.type"),
    ({"response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": ["x"]}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": ["json_schema"]}}, "response_format.type"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]},
     "tools[0].function.description"),
])
def test_tool_and_format_objects_are_checked(client, master, fields, param):
    """Native adapters read these objects by path: a wrong shape was their AttributeError, a 500."""
    assert error_of(client.post(CHAT, json=chat(**fields), headers=master), 400)["param"] == param


@pytest.mark.parametrize("schema", [
    {"type": 5}, {"type": [{}]}, {"type": "object", "properties": {"a": {"type": ["string", []]}}},
    {"allOf": {"type": "object"}}, {"type": "object", "required": [["a"]]}, {"type": "string", "format": []},
    {"allOf": [{"type": "object", "required": None}]}, {"$ref": "#/$defs/D", "$defs": {"D": ["x"]}},
    {"type": "object", "definitions": ["x"]},
])
def test_gemini_refuses_schemas_it_cannot_read(schema):
    from deltallm.errors import GatewayError
    from deltallm.providers import gemini_request
    from deltallm.router.deployment import Deployment
    deployment = Deployment("g", {"model": "gemini/gemini-2.0-flash", "api_key": "k"})
    for body in (chat(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}),
                 chat(tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}])):
        try:
            json.dumps(gemini_request.to_request(deployment, body))
        except GatewayError as exc:
            assert exc.status == 400 and exc.param.endswith(("schema", "parameters"))


@pytest.mark.parametrize("budget", [1e-300, 123456.789, 1e9, 0])
def test_budgets_are_stored_exactly(admin_client, master, budget):
    """max_budget and spend are 8-byte floats: PostgreSQL's REAL refused 1e-300 (a 500) and kept 7 digits."""
    created = admin_client.post("/admin/keys", json={"max_budget": budget}, headers=master)
    assert created.status_code == 201, created.data
    read = admin_client.get(f"/admin/keys/{created.get_json()['id']}", headers=master)
    assert read.get_json()["max_budget"] == budget


def test_migrate_widens_real_columns_on_postgres(pg_url, tmp_path):
    """Tables created by earlier versions (REAL columns) are widened by `migrate`, data kept."""
    app = create_app(base_config(tmp_path, database_url=pg_url))
    with db.connection() as database:
        database.drop_tables(models.MODELS, safe=True)
    models.migrate()
    with db.connection() as database:
        database.execute_sql("ALTER TABLE deltallm_api_keys ALTER COLUMN max_budget TYPE real, "
                             "ALTER COLUMN spend TYPE real")
    client = app.test_client()
    master = {"Authorization": "Bearer sk-master-test"}
    key_id = client.post("/admin/keys", json={"max_budget": 12.5}, headers=master).get_json()["id"]
    models.migrate()
    models.migrate()
    with db.connection() as database:
        types = dict(database.execute_sql(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'deltallm_api_keys' AND column_name IN ('max_budget', 'spend')").fetchall())
    assert types == {"max_budget": "double precision", "spend": "double precision"}
    resp = client.patch(f"/admin/keys/{key_id}", json={"max_budget": 123456.789}, headers=master)
    assert resp.get_json()["max_budget"] == 123456.789
    db.database.close_all()


@pytest.mark.parametrize("path,field", [
    (CHAT, "max_tokens"), (CHAT, "max_completion_tokens"), ("/v1/completions", "max_tokens"),
    ("/v1/responses", "max_output_tokens")])
def test_token_counts_stay_within_32_bits(client, master, path, field):
    """Token limits reserve max_tokens: sums of such values must never overflow a 64-bit counter."""
    body = {CHAT: chat(), "/v1/completions": {"model": "mocky", "prompt": "hi"},
            "/v1/responses": {"model": "mocky", "input": "hi"}}[path]
    err = error_of(client.post(path, json=dict(body, **{field: 2 ** 31}), headers=master), 400)
    assert err["param"] == field
    assert client.post(path, json=dict(body, **{field: 2 ** 31 - 1}), headers=master).status_code == 200
