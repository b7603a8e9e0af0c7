"""A request's MCP tool entries: checked, resolved against the registry and the caller's allowlist, and
offered to the model as function tools whose names every provider accepts."""
import hashlib
import re

from deltallm.errors import InvalidRequest, NotFound

# Function-name rules of the providers a loop may reach (a fallback can switch provider mid-loop):
# OpenAI, Azure and the OpenAI-compatible families, Anthropic and Bedrock Converse take
# [a-zA-Z0-9_-]{1,64}; Gemini also takes `.` and `:` but must start with a letter or `_`. The names
# offered fit all of them at once.
PROVIDER_NAME_RULES = {
    "openai": re.compile(r"[a-zA-Z0-9_-]{1,64}"),
    "anthropic": re.compile(r"[a-zA-Z0-9_-]{1,64}"),
    "bedrock": re.compile(r"[a-zA-Z0-9_-]{1,64}"),
    "gemini": re.compile(r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}"),
}
UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
MAX_NAME = 64
# Fields of OpenAI's MCP tool that need what the gateway does not do: the client choosing the
# server's address or credentials, or approving each call.
NOT_OFFERED = {
    "server_url": "the gateway reaches only the MCP servers registered with it (config mcp_servers or "
                  "/admin/mcp/servers); name one in `server_label`",
    "connector_id": "connectors are OpenAI's; register the server with the gateway instead",
    "tunnel_id": "tunnels are OpenAI's; register the server with the gateway instead",
    "authorization": "credentials of an MCP server come from the gateway's configuration",
    "headers": "headers for an MCP server come from the gateway's configuration",
    "server_description": "the gateway does not pass a server description to the model",
    "defer_loading": "tools are loaded when the request starts",
}


def function_name(server_key, tool, taken):
    """A name for `server_key`'s `tool` that every provider accepts and no other tool of the request has."""
    name = UNSAFE.sub("_", f"{server_key}__{tool}")
    if not name[0].isalpha() and name[0] != "_":
        name = "_" + name
    if len(name) > MAX_NAME or name in taken or name != f"{server_key}__{tool}":
        digest = hashlib.sha256(f"{server_key}\x00{tool}".encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}_{digest}"
    return name


def is_mcp(tool):
    return isinstance(tool, dict) and tool.get("type") == "mcp"


def entries(tools):
    """[(index in `tools`, server key, allowed tool names or None)] of a chat body's MCP tools."""
    found = []
    for i, tool in enumerate(tools or ()):
        if is_mcp(tool):
            found.append((i, *entry(i, tool)))
    return found


def entry(i, tool):
    where = f"tools[{i}]"
    for key in tool:
        if key in NOT_OFFERED:
            raise InvalidRequest(f"Unsupported parameter: '{where}.{key}': {NOT_OFFERED[key]}.",
                                 param=f"{where}.{key}", code="unsupported_parameter")
        if key not in ("type", "server", "server_label", "allowed_tools", "require_approval"):
            raise InvalidRequest(f"Unknown parameter: '{where}.{key}'.", param=f"{where}.{key}",
                                 code="unknown_parameter")
    if "server" in tool and "server_label" in tool:
        raise InvalidRequest(f"Give '{where}.server' or its alias '{where}.server_label', not both",
                             param=f"{where}.server_label")
    server = tool.get("server", tool.get("server_label"))
    if not isinstance(server, str) or not server:
        raise InvalidRequest(f"Missing required parameter: '{where}.server' (an MCP server key).",
                             param=f"{where}.server")
    approval = tool.get("require_approval")
    if approval not in (None, "never") and approval != {"never": {}}:
        raise InvalidRequest(f"Unsupported value: '{where}.require_approval': the gateway runs MCP calls "
                             "without approvals; use 'never'.", param=f"{where}.require_approval",
                             code="unsupported_value")
    return server, allowed_names(where, tool.get("allowed_tools"))


def allowed_names(where, allowed):
    if allowed is None:
        return None
    if isinstance(allowed, dict):  # OpenAI's filter object
        unknown = set(allowed) - {"tool_names"}
        if unknown:
            raise InvalidRequest(f"Unsupported parameter: '{where}.allowed_tools.{sorted(unknown)[0]}'.",
                                 param=f"{where}.allowed_tools.{sorted(unknown)[0]}", code="unsupported_parameter")
        allowed = allowed.get("tool_names", [])
    if not isinstance(allowed, list) or not all(isinstance(n, str) and n for n in allowed):
        raise InvalidRequest(f"Invalid value for '{where}.allowed_tools': must be an array of tool names",
                             param=f"{where}.allowed_tools")
    return allowed


class McpTools:
    """The MCP tools one request offers its model: function name -> (server, tool name)."""

    def __init__(self, found, registry, visibility, taken=(), deadline=None):
        self.by_name, self.functions, self.listed = {}, [], []
        taken = set(taken)
        for i, key, allowed in found:
            server = registry.get(key) if visibility.sees(key) else None
            if server is None:  # a hidden server reads exactly like a missing one
                raise NotFound(f"Unknown MCP server '{key}'.", param=f"tools[{i}].server")
            tools = [t for t in server.tools(deadline) if visibility.may_call(key, t["name"])]
            if allowed is not None:
                names = {t["name"] for t in tools}
                for j, name in enumerate(allowed):
                    if name not in names:
                        raise InvalidRequest(f"Invalid value for 'tools[{i}].allowed_tools[{j}]': MCP server "
                                             f"'{key}' has no tool '{name}' this key may call",
                                             param=f"tools[{i}].allowed_tools[{j}]")
                tools = [t for t in tools if t["name"] in allowed]
            self.listed.append((key, tools))
            for tool in tools:
                name = function_name(key, tool["name"], taken)
                taken.add(name)
                self.by_name[name] = (server, tool["name"])
                fn = {"name": name, "parameters": tool.get("inputSchema") or {"type": "object", "properties": {}}}
                if tool.get("description") or tool.get("title"):
                    fn["description"] = tool.get("description") or tool.get("title")
                self.functions.append({"type": "function", "function": fn})
