"""Fixtures for the MCP tests: fake MCP servers and an app that knows them."""
import pytest

from deltallm import keys
from tests.conftest import MASTER_KEY, base_config
from tests.fakes.mcp import FakeMcp

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def docs():
    server = FakeMcp()
    yield server
    server.close()


@pytest.fixture
def wiki():
    server = FakeMcp(reply="sse", token="wiki-token-123456")
    yield server
    server.close()


@pytest.fixture
def config(tmp_path, docs, wiki):
    config = base_config(tmp_path, encryption_key="test-encryption-key")
    config["model_list"] += [
        {"model_name": "mock-all", "deltallm_params": {"model": "mock/m", "mock_tool_calls": "all"}},
        {"model_name": "mock-first", "deltallm_params": {"model": "mock/m", "mock_tool_calls": "first"},
         "model_info": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}]
    config["mcp_servers"] = {"docs": {"url": docs.url, "description": "The docs"},
                             "wiki": {"url": wiki.url, "auth": {"type": "bearer", "token": "wiki-token-123456"}}}
    return config


@pytest.fixture
def key_for(app):
    """A virtual key's headers for an MCP allowlist."""
    def make(mcp_servers):
        return {"Authorization": f"Bearer {keys.create_key(name='mcp', mcp_servers=mcp_servers)[1]}"}
    return make
