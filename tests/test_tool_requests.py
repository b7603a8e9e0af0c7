"""Tool requests OpenAI rejects are rejected here too, before any provider sees them (issue 12, item 3)."""
import pytest
import responses

from tests.test_errors import error_of

CHAT = "/v1/chat/completions"
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def chat(model, **fields):
    return {"model": model, "messages": [{"role": "user", "content": "weather?"}], **fields}


@pytest.mark.parametrize("model", ["mocky", "gpt-4o-mini"])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
@responses.activate
def test_forcing_a_tool_without_tools_is_400(client, master, model, choice):
    for fields in ({"tool_choice": choice}, {"tool_choice": choice, "tools": []}):
        err = error_of(client.post(CHAT, json=chat(model, **fields), headers=master), 400)
        assert err["param"] == "tool_choice" and "'tools'" in err["message"]
    assert not responses.calls  # the upstream never saw it


@pytest.mark.parametrize("choice", ["auto", "none"])
def test_auto_and_none_without_tools_still_answer(client, master, choice):
    resp = client.post(CHAT, json=chat("mocky", tool_choice=choice), headers=master)
    assert resp.status_code == 200, resp.data


@pytest.mark.parametrize("model", ["mocky", "gpt-4o-mini"])
@pytest.mark.parametrize("kind", ["web_search", "custom", "code_interpreter"])
@responses.activate
def test_tool_types_other_than_function_are_400_naming_the_type(client, master, model, kind):
    tools = [TOOL, {"type": kind, kind: {"name": "x"}}]
    err = error_of(client.post(CHAT, json=chat(model, tools=tools), headers=master), 400)
    assert err["param"] == "tools[1].type" and "function" in err["message"]
    assert not responses.calls


def test_forced_tool_with_tools_is_accepted(client, master):
    body = chat("mocky", tools=[TOOL], tool_choice="required")
    message = client.post(CHAT, json=body, headers=master).get_json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
