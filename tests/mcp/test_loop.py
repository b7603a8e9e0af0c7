"""The MCP tool loop in /v1/chat/completions and /v1/responses: turns, parallel calls, limits, visibility,
faults, billing; the model is the mock provider (mock_tool_calls) or a mocked OpenAI-compatible upstream."""
import json

import orjson
import pytest
import responses

from deltallm import create_app, keys, models
from deltallm.mcp.tools import PROVIDER_NAME_RULES, function_name
from deltallm.models import Usage
from tests import openapi
from tests.conftest import UPSTREAM
from tests.helpers import completion
from tests.mcp.conftest import MASTER

DOCS = {"type": "mcp", "server": "docs"}


def tool_call_completion(*calls):
    body = completion()
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]}
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def chat(client, headers=MASTER, model="mocky", mode="first", **body):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "tools": [DOCS], **body}
    if mode:
        body["mock_tool_calls"] = mode
    return client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.fixture
def upstream_mcp():
    """The OpenAI-compatible upstream mocked; the fake MCP servers on 127.0.0.1 are really called."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield mock


def test_one_round_trip_then_the_answer(client, docs, app):
    resp = chat(client, tools=[dict(DOCS, allowed_tools=["echo"])])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["choices"][0]["message"]["content"] == "This is a mock response to: hi"
    assert resp.headers["x-deltallm-mcp-calls"] == "1"
    called = [r["params"] for r in docs.requests if r["method"] == "tools/call"]
    assert called == [{"name": "echo", "arguments": {"text": "hi"}}]
    # usage sums both turns: the second turn's prompt holds the tool call and its result
    assert body["usage"] == {"prompt_tokens": 4 + 12, "completion_tokens": 2 * 7, "total_tokens": 30}
    openapi.check("CreateChatCompletionResponse", body)


def test_results_reach_the_model_as_tool_messages(client, docs, upstream_mcp):
    seen = []

    def reply(request):
        body = orjson.loads(request.body)
        seen.append(body)
        if len(seen) == 1:
            names = [t["function"]["name"] for t in body["tools"]]
            return 200, {}, orjson.dumps(tool_call_completion((names[0], {"text": "a"}), (names[1], {"a": 2, "b": 3}),
                                                              (names[2], {})))
        return 200, {}, orjson.dumps(completion("done"))
    upstream_mcp.add_callback(responses.POST, UPSTREAM + "/chat/completions", callback=reply)
    resp = chat(client, model="gpt-4o-mini", mode=None, tools=[dict(DOCS, allowed_tools=["echo", "add", "fail"])])
    assert resp.status_code == 200 and resp.get_json()["choices"][0]["message"]["content"] == "done"
    assert [t["type"] for t in seen[0]["tools"]] == ["function"] * 3  # MCP entries never go upstream
    tool_messages = [m for m in seen[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["echo: a", "5", "Error: tool failed on purpose"]
    assert seen[1]["messages"][1]["tool_calls"][0]["id"] == "call_0"
    assert resp.get_json()["usage"]["total_tokens"] == 2 * completion()["usage"]["total_tokens"]


def test_parallel_calls_and_responses_items(client, docs):
    # the Responses schema refuses unknown fields, so the mock's mode comes from the deployment
    resp = client.post("/v1/responses", headers=MASTER, json={
        "model": "mock-all", "input": "hi",
        "tools": [{"type": "mcp", "server_label": "docs", "allowed_tools": ["add", "fail"],
                   "require_approval": "never"}]})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    openapi.check("Response", body)
    kinds = [item["type"] for item in body["output"]]
    assert kinds == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    add, fail = body["output"][1:3]
    assert add["name"] == "add" and add["server_label"] == "docs" and json.loads(add["arguments"]) == {"a": 1, "b": 1}
    assert add["output"] == "2" and add["error"] is None and add["status"] == "completed"
    assert fail["output"] is None and fail["error"]["type"] == "mcp_tool_execution_error"
    assert body["tools"] == [{"type": "mcp", "server_label": "docs", "allowed_tools": ["add", "fail"],
                              "require_approval": "never"}]
    assert body["usage"]["input_tokens"] > 0


def test_client_function_calls_end_the_loop(client, docs):
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    resp = chat(client, tools=[lookup, DOCS])
    message = resp.get_json()["choices"][0]["message"]
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["lookup"]
    assert resp.headers["x-deltallm-mcp-calls"] == "0"
    # the same turn's MCP calls are not run: the client answers its own call first
    mixed = chat(client, mode="all", tools=[lookup, dict(DOCS, allowed_tools=["echo"])])
    assert [c["function"]["name"] for c in mixed.get_json()["choices"][0]["message"]["tool_calls"]] == ["lookup"]
    assert not [r for r in docs.requests if r["method"] == "tools/call"]


def test_turn_and_call_limits(client, docs, app):
    resp = chat(client, mode="always", tools=[dict(DOCS, allowed_tools=["echo"])])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "mcp_max_turns"
    assert "8 turns" in resp.get_json()["error"]["message"]
    assert len([r for r in docs.requests if r["method"] == "tools/call"]) == 7
    app.extensions["deltallm"].mcp_limits.calls = 2
    resp = chat(client, mode="all", tools=[dict(DOCS, allowed_tools=["echo", "add", "fail"])])
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "mcp_max_tool_calls"
    assert "more than 2 MCP tool calls" in resp.get_json()["error"]["message"]


def test_stream_and_n_are_refused(client):
    assert chat(client, stream=True).get_json()["error"]["param"] == "stream"
    assert chat(client, n=2).get_json()["error"]["param"] == "n"
    streamed = client.post("/v1/responses", headers=MASTER, json={
        "model": "mocky", "input": "hi", "stream": True, "tools": [{"type": "mcp", "server_label": "docs"}]})
    assert streamed.status_code == 400 and streamed.get_json()["error"]["param"] == "stream"


def test_allowlists(client, key_for):
    nothing = chat(client, key_for([]))
    unknown = chat(client, key_for([]), tools=[{"type": "mcp", "server": "nope"}])
    assert nothing.status_code == unknown.status_code == 404
    assert nothing.get_json()["error"]["message"].replace("docs", "X") == \
        unknown.get_json()["error"]["message"].replace("nope", "X")  # a hidden server reads like a missing one
    one_tool = key_for(["docs.echo"])
    assert chat(client, one_tool).headers["x-deltallm-mcp-calls"] == "1"
    narrowed = chat(client, one_tool, tools=[dict(DOCS, allowed_tools=["add"])])
    assert narrowed.status_code == 400 and narrowed.get_json()["error"]["param"] == "tools[0].allowed_tools[0]"
    assert chat(client, key_for(["docs"]), tools=[dict(DOCS, allowed_tools=["add"])]).status_code == 200


def test_names_fit_every_provider_and_map_back(client, docs):
    for server, tool in (("docs", "search.docs"), ("9-x", "a/b c"), ("s", "t" * 80)):
        name = function_name(server, tool, set())
        assert all(rule.fullmatch(name) for rule in PROVIDER_NAME_RULES.values()), name
    assert function_name("a", "b.c", set()) != function_name("a", "b_c", set())
    resp = chat(client, tools=[dict(DOCS, allowed_tools=["search.docs"])])
    assert resp.status_code == 200
    assert [r["params"]["name"] for r in docs.requests if r["method"] == "tools/call"] == ["search.docs"]


@pytest.mark.parametrize("fault,status,code", [
    ("down", 502, "mcp_server_error"), ("garbage", 502, "mcp_server_error"),
    ("forget", 502, "mcp_server_error"), ("slow", 504, "mcp_timeout")])
def test_faults_end_the_loop_with_a_clear_error(client, docs, app, fault, status, code):
    app.extensions["deltallm"].mcp.get("docs").client.timeout = 0.5
    tools = [dict(DOCS, allowed_tools=["slow" if fault == "slow" else "echo"])]
    assert chat(client, mode=None, tools=tools).status_code == 200  # tools listed, session open
    if fault == "down":
        docs.close()
    elif fault != "slow":
        setattr(docs, fault, True)
    resp = chat(client, tools=tools)  # the mock fills slow's `seconds` with 1: over the 0.5 s deadline
    assert resp.status_code == status, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == code and "'docs'" in error["message"]


def test_a_dropped_session_is_opened_again_mid_loop(client, docs):
    assert chat(client, mode=None).status_code == 200
    docs.expire()
    assert chat(client).headers["x-deltallm-mcp-calls"] == "1"


def test_tool_output_is_capped(client, docs, app):
    app.extensions["deltallm"].mcp_limits.output_bytes = 1000
    resp = client.post("/v1/responses", headers=MASTER, json={
        "model": "mock-first", "input": "hi", "tools": [{"type": "mcp", "server_label": "docs",
                                                         "allowed_tools": ["big"]}]})
    output = resp.get_json()["output"][1]["output"]
    assert output.startswith("x" * 1000) and "[truncated by DeltaLLM: " in output and len(output) < 1200


def test_every_turn_is_billed(client, app, docs):
    headers = {"Authorization": f"Bearer {keys.create_key(mcp_servers=['docs'], max_budget=10)[1]}"}
    body = chat(client, headers, model="mock-first", tools=[dict(DOCS, allowed_tools=["echo"])]).get_json()
    app.extensions["deltallm"].writer.drain()
    [record] = list(Usage.select())
    assert record.total_tokens == body["usage"]["total_tokens"] and record.status == 200
    assert record.spend > 0


def test_turns_before_a_failure_are_billed(client, app, docs):
    headers = {"Authorization": f"Bearer {keys.create_key(mcp_servers=['docs'], max_budget=10)[1]}"}
    tools = [dict(DOCS, allowed_tools=["echo"])]
    assert chat(client, headers, model="mock-first", mode=None, tools=tools).status_code == 200  # tools cached
    docs.garbage = True
    assert chat(client, headers, model="mock-first", tools=tools).status_code == 502
    app.extensions["deltallm"].writer.drain()
    failed = list(Usage.select().order_by(Usage.id))[-1]
    assert failed.status == 502 and failed.total_tokens > 0 and failed.spend > 0
