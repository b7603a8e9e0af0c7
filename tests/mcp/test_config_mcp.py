"""mcp_servers in the config and the MCP general settings: strict keys, one clear message per mistake."""
import pytest

from deltallm import config
from deltallm.errors import ConfigError


def load(servers=None, **general):
    return config.from_dict({"mcp_servers": servers or {}, "general_settings": general})


def test_servers_and_defaults_load(monkeypatch):
    monkeypatch.setenv("DOCS_TOKEN", "t0k3n")
    settings = load({"docs": {"url": "https://mcp.test/mcp", "auth": {"type": "bearer",
                                                                      "token": "os.environ/DOCS_TOKEN"}},
                     "wiki": {"url": "http://127.0.0.1:9200/mcp", "description": "Wiki",
                              "auth": {"type": "headers", "headers": {"X-Api-Key": "k"}}},
                     "open": {"url": "http://127.0.0.1:9300/mcp"}})
    assert settings.mcp_servers["docs"]["auth"] == {"type": "bearer", "token": "t0k3n", "headers": None}
    assert settings.mcp_servers["wiki"]["auth"]["headers"] == {"X-Api-Key": "k"}
    assert settings.mcp_servers["open"]["auth"]["type"] == "none" and settings.warnings == []
    general = settings.general
    assert (general["mcp_max_turns"], general["mcp_max_tool_calls"], general["mcp_max_tool_output_kb"],
            general["mcp_timeout"], general["mcp_tools_cache_seconds"]) == (8, 16, 100, 60, 300)


@pytest.mark.parametrize("servers,message", [
    ({"a.b": {"url": "http://x/mcp"}}, "mcp_servers.a.b: a server key is 1 to 64"),
    ({"docs": {"url": "ftp://x"}}, "mcp_servers.docs.url: must be an http:// or https:// URL"),
    ({"docs": {}}, "mcp_servers.docs.url: must be"),
    ({"docs": {"url": "http://x/mcp", "auth": {"type": "bearer"}}}, "mcp_servers.docs.auth.token: a bearer"),
    ({"docs": {"url": "http://x/mcp", "auth": {"type": "oauth"}}}, "mcp_servers.docs.auth.type: must be one of"),
    ({"docs": {"url": "http://x/mcp", "auth": {"type": "headers", "headers": {"a": 1}}}},
     "mcp_servers.docs.auth.headers: must be a mapping"),
    ({"docs": {"url": "http://x/mcp", "auth": {"type": "bearer", "token": "t", "headers": {"a": "b"}}}},
     "mcp_servers.docs.auth.headers: not used by auth type 'bearer'"),
    ({"docs": {"url": "http://x/mcp", "description": 5}}, "mcp_servers.docs.description: must be a string"),
])
def test_bad_servers_fail_naming_the_key(servers, message):
    with pytest.raises(ConfigError) as info:
        load(servers)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("name,value", [("mcp_max_turns", 0), ("mcp_max_tool_calls", 0),
                                        ("mcp_max_tool_output_kb", 0), ("mcp_timeout", 0), ("mcp_turns", 3)])
def test_bad_general_settings(name, value):
    with pytest.raises(ConfigError, match=f"general_settings.{name}"):
        load(**{name: value})
