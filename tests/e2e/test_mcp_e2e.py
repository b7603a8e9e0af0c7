"""MCP end to end under real gunicorn/gevent: the tool loop through the openai SDK (OpenAI-compatible and
Anthropic, Gemini and Bedrock upstreams, the mock), the /mcp gateway through the official `mcp` SDK, allowlists and a fault."""
import asyncio

import openai
import pytest
import requests

from tests import openapi
from tests.conftest import ROOT, free_port
from tests.e2e.conftest import MASTER, running_gateway
from tests.fakes.mcp import FakeMcp


@pytest.fixture(scope="module")
def servers():
    docs, wiki = FakeMcp(), FakeMcp(reply="sse", token="wiki-token-123456")
    yield {"docs": docs, "wiki": wiki}
    docs.close()
    wiki.close()


@pytest.fixture(scope="module")
def gateway(upstream_url, servers, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mcp-gateway")
    config = f"""
model_list:
  - model_name: gpt-4o-mini
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream_url}/v1, api_key: upstream-secret}}
  - model_name: claude
    deltallm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: {upstream_url}/v1, api_key: upstream-secret}}
  - model_name: gemini
    deltallm_params: {{model: gemini/gemini-2.0-flash, api_base: {upstream_url}/v1beta, api_key: upstream-secret}}
  - model_name: bedrock
    deltallm_params: {{model: bedrock/anthropic.claude-3-haiku-20240307-v1:0, api_base: {upstream_url},
                       aws_region_name: us-east-1, aws_access_key_id: AKIDTEST, aws_secret_access_key: SECRET}}
  - model_name: mocky
    deltallm_params: {{model: mock/mock-1, mock_tool_calls: first}}
  - model_name: plain
    deltallm_params: {{model: mock/bench}}
  - model_name: tools
    deltallm_params: {{model: mock/bench, mock_tool_calls: first}}
mcp_servers:
  bench: {{url: {servers["docs"].url}}}
  docs: {{url: {servers["docs"].url}}}
  wiki: {{url: {servers["wiki"].url}, auth: {{type: bearer, token: wiki-token-123456}}}}
  gone: {{url: "http://127.0.0.1:{free_port()}/mcp"}}
general_settings:
  master_key: {MASTER}
  database_url: {tmp / "mcp.db"}
"""
    with running_gateway(config, tmp) as url:
        yield url


def sdk(gateway, key=MASTER):
    return openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=30)


def tool_calls(server):
    return [r["params"] for r in server.requests if r["method"] == "tools/call"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "gemini", "bedrock", "mocky"])
def test_chat_runs_mcp_tools(gateway, servers, model):
    before = len(tool_calls(servers["wiki"]))
    raw = sdk(gateway).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hello gateway"}],
        tools=[{"type": "mcp", "server": "wiki", "allowed_tools": ["echo"]}])
    answer = raw.parse()
    # each fake echoes the last user text; Bedrock's fake only reads the last turn (here the tool result)
    expected = {"mocky": "This is a mock response to: Hello gateway", "bedrock": "echo:"}
    assert answer.choices[0].message.content == expected.get(model, "echo: Hello gateway")
    assert answer.choices[0].message.tool_calls is None and raw.headers["x-deltallm-mcp-calls"] == "1"
    assert [c["name"] for c in tool_calls(servers["wiki"])[before:]] == ["echo"]
    assert answer.usage.total_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude"])
def test_responses_show_mcp_calls(gateway, servers, model):
    raw = sdk(gateway).responses.with_raw_response.create(
        model=model, input="Hello gateway",
        tools=[{"type": "mcp", "server_label": "docs", "allowed_tools": ["echo"], "require_approval": "never"}])
    response = raw.parse()
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    call = response.output[1]
    # the fake upstreams call the first tool with {"q": <their answer text>}, which echo echoes
    assert call.server_label == "docs" and call.name == "echo" and call.output == "echo: echo: Hello gateway"
    assert response.output_text == "echo: Hello gateway"
    openapi.check("Response", raw.http_response.json())


def test_allowlists_and_a_down_server(gateway):
    admin = {"Authorization": f"Bearer {MASTER}"}
    created = requests.post(gateway + "/admin/keys", json={"mcp_servers": ["docs.echo"]}, headers=admin, timeout=10)
    limited = sdk(gateway, created.json()["key"])
    with pytest.raises(openai.NotFoundError):
        limited.chat.completions.create(model="mocky", messages=[{"role": "user", "content": "x"}],
                                        tools=[{"type": "mcp", "server": "wiki"}])
    with pytest.raises(openai.BadRequestError):
        limited.chat.completions.create(model="mocky", messages=[{"role": "user", "content": "x"}],
                                        tools=[{"type": "mcp", "server": "docs", "allowed_tools": ["add"]}])
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway).chat.completions.create(model="mocky", messages=[{"role": "user", "content": "x"}],
                                             tools=[{"type": "mcp", "server": "gone"}])
    assert info.value.status_code == 502 and "'gone'" in info.value.message
    with pytest.raises(openai.BadRequestError):
        sdk(gateway).chat.completions.create(model="mocky", messages=[{"role": "user", "content": "x"}],
                                             tools=[{"type": "mcp", "server": "docs"}], stream=True)


async def mcp_session(url, key):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool("docs.add", {"a": 2, "b": 3})
                return init, tools, result


def test_the_official_mcp_sdk_talks_to_the_gateway(gateway):
    init, tools, result = asyncio.run(mcp_session(gateway + "/mcp", MASTER))
    assert init.server_info.name == "deltallm"
    names = [t.name for t in tools.tools]
    assert "docs.add" in names and "wiki.search.docs" in names and not any(n.startswith("gone.") for n in names)
    assert result.is_error is False and result.structured_content == {"sum": 5}
    assert result.content[0].text == "5"


def test_the_overhead_benchmark_measures(gateway, servers):
    """bench/mcp_overhead.py's measurement, a few requests long (the benchmark itself runs elsewhere)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("mcp_overhead", ROOT / "bench" / "mcp_overhead.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.measure(gateway, servers["docs"].url, 3, warmup=1, key=MASTER)
    assert set(out) == {"plain", "mcp", "direct"} and out["mcp"][0] > out["plain"][0] > 0
    assert "one MCP round trip adds" in bench.report(out)
