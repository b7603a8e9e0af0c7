"""The MCP server registry (master key only): list, add and delete servers, and read a server's tools."""
from flask import Blueprint, request

from deltallm import config
from deltallm.config_sections import mcp_server_entry
from deltallm.api.common import gateway, json_body, json_response
from deltallm.errors import ConfigError, GatewayError, InvalidRequest, NotFound
from deltallm.keys import iso
from deltallm.mcp import store

bp = Blueprint("admin_mcp", __name__, url_prefix="/admin/mcp")


def view(server):
    """A server as the admin API shows it: never its token, header names only."""
    auth = {"type": server.auth["type"]}
    if server.auth["type"] == "headers":
        auth["headers"] = {name: "***" for name in server.auth["headers"]}
    return {"server_key": server.key, "object": "mcp_server", "url": server.url, "auth": auth,
            "description": server.description, "source": server.source,
            "created_at": iso(server.created_at) if server.created_at else None}


def known(server_key):
    server = gateway().mcp.get(server_key)
    if server is None:
        raise NotFound(f"No MCP server '{server_key}'.", param="server_key")
    return server


@bp.get("/servers")
def list_servers():
    registry = gateway().mcp
    registry.refresh(force=True)
    return json_response({"object": "list", "data": [view(s) for s in registry.servers()]})


@bp.post("/servers")
def add_server():
    gw = gateway()
    raw = json_body()
    if not isinstance(raw, dict):
        raise InvalidRequest("The body must be one MCP server: {server_key, url, auth, description}.")
    raw = dict(raw)
    key = raw.pop("server_key", None)
    if not isinstance(key, str):
        raise InvalidRequest("Missing required parameter: 'server_key' (a string).", param="server_key")
    try:
        entry, ignored = mcp_server_entry(
            key, config.substitute_env(raw, "body", gw.settings.environment_variables), "body")
    except ConfigError as exc:
        path = str(exc).partition(": ")[0].removeprefix("body").lstrip(".")
        raise InvalidRequest(f"Invalid MCP server: {exc}", param=path or "server_key") from None
    gw.mcp.refresh(force=True)
    if gw.mcp.get(key) is not None or store.exists(key):
        raise GatewayError(f"An MCP server with key '{key}' already exists.", status=409,
                           type="invalid_request_error", code="conflict", param="server_key")
    store.store(gw.secrets, key, entry)
    gw.mcp.refresh(force=True)
    created = view(gw.mcp.get(key))
    created["warnings"] = [f"{path.removeprefix('body.')}: {why}" for path, why in ignored]
    return json_response(created, 201)


@bp.get("/servers/<server_key>")
def read_server(server_key):
    return json_response(view(known(server_key)))


@bp.get("/servers/<server_key>/tools")
def server_tools(server_key):
    """The server's tools; `?refresh=true` lists them again now instead of from the cache."""
    refresh = request.args.get("refresh", "false").lower()
    if refresh not in ("true", "false"):
        raise InvalidRequest("refresh must be true or false", param="refresh")
    tools = known(server_key).tools(refresh=refresh == "true")
    return json_response({"object": "list", "data": tools})


@bp.delete("/servers/<server_key>")
def delete_server(server_key):
    gw = gateway()
    found = gw.mcp.get(server_key)
    if found is not None and found.source == "config":
        raise GatewayError(f"MCP server '{server_key}' comes from the config file; change the config to "
                           "remove it.", status=409, type="invalid_request_error", code="conflict")
    if not store.delete(server_key):
        raise NotFound(f"No MCP server '{server_key}'.", param="server_key")
    gw.mcp.refresh(force=True)
    return json_response({"server_key": server_key, "object": "mcp_server", "deleted": True})
