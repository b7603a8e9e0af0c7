"""The server side of POST /mcp: JSON-RPC 2.0 dispatch of initialize, ping, tools/list and tools/call
over every upstream server the caller may see (tools named `server_key.tool_name`)."""
import logging

from deltallm import __version__
from deltallm.mcp.client import PROTOCOL_VERSIONS
from deltallm.mcp.errors import (DENIED, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, UPSTREAM_FAILED,
                                 UPSTREAM_TIMEOUT, McpServerError, McpTimeout, RpcError)
from deltallm.mcp.registry import Visibility

logger = logging.getLogger(__name__)

METHODS = ("initialize", "ping", "tools/list", "tools/call")
BATCH_VERSIONS = ("2025-03-26",)  # JSON-RPC batches came with 2025-03-26 and left with 2025-06-18
SERVER_INFO = {"name": "deltallm", "version": __version__}


class Reply:
    """What the HTTP layer sends: a status, a JSON body (None: nothing) and headers."""

    def __init__(self, status, body=None, headers=None):
        self.status, self.body, self.headers = status, body, dict(headers or {})


def error(rid, code, message, data=None):
    return {"jsonrpc": "2.0", "id": rid, "error": RpcError(code, message, data).to_dict()}


class McpGateway:
    """One request's view of the gateway: the registry, the session store and who is calling."""

    def __init__(self, registry, sessions, principal):
        self.registry, self.sessions, self.principal = registry, sessions, principal
        self.visibility = Visibility(principal)

    def post(self, payload, session_id, version_header):
        """Answer one POST body (already parsed JSON)."""
        if isinstance(payload, list):
            return self.batch(payload, session_id, version_header)
        if not isinstance(payload, dict) or payload.get("jsonrpc") != "2.0":
            return Reply(400, error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message"))
        if "method" not in payload:
            return Reply(202)  # a response to a server request: we send none, so there is nothing to do
        method, rid = payload["method"], payload.get("id")
        if method == "initialize" and "id" in payload:
            return self.initialize(rid, payload.get("params"))
        if "id" not in payload:
            return Reply(202)  # notifications (initialized, cancelled ...) need no answer
        if method not in METHODS:
            return Reply(200, error(rid, METHOD_NOT_FOUND, f"Method not found: {method}"))
        version, refusal = self.session(session_id, version_header, rid)
        if refusal is not None and not (method == "ping" and not session_id):  # ping works before a session
            return refusal
        return Reply(200, self.answer(payload))

    def session(self, session_id, version_header, rid=None):
        """(protocol version, None) for a live session, or (None, the Reply refusing the request)."""
        if not session_id:
            return None, Reply(400, error(rid, INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is "
                                          "required (send initialize first)"))
        version = self.sessions.version(session_id, self.principal.key_id)
        if version is None:
            return None, Reply(404, error(rid, -32001, "Session not found: initialize a new session"))
        if version_header and version_header != version:
            return None, Reply(400, error(rid, INVALID_REQUEST, f"Bad Request: MCP-Protocol-Version "
                                          f"{version_header!r} does not match the session's {version!r}"))
        return version, None

    def batch(self, items, session_id, version_header):
        if not items:
            return Reply(400, error(None, INVALID_REQUEST, "Invalid Request: empty batch"))
        version, refusal = self.session(session_id, version_header)
        if refusal is not None:
            return refusal
        if version not in BATCH_VERSIONS:
            return Reply(400, error(None, INVALID_REQUEST, f"Invalid Request: protocol version {version} "
                                    "does not allow JSON-RPC batches"))
        replies = []
        for item in items:
            if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
                replies.append(error(None, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message"))
            elif "method" in item and "id" in item:
                replies.append(self.answer(item) if item["method"] != "initialize" else
                               error(item["id"], INVALID_REQUEST, "initialize may not be part of a batch"))
        return Reply(200, replies) if replies else Reply(202)

    def initialize(self, rid, params):
        if not isinstance(params, dict) or not isinstance(params.get("protocolVersion"), str):
            return Reply(200, error(rid, INVALID_PARAMS, "Invalid params: protocolVersion is required"))
        wanted = params["protocolVersion"]
        version = wanted if wanted in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        session_id = self.sessions.create(version, self.principal.key_id)
        result = {"protocolVersion": version, "capabilities": {"tools": {"listChanged": False}},
                  "serverInfo": SERVER_INFO,
                  "instructions": "Tools of the MCP servers this key may use, named server_key.tool_name."}
        return Reply(200, {"jsonrpc": "2.0", "id": rid, "result": result}, {"Mcp-Session-Id": session_id})

    def answer(self, message):
        """The JSON-RPC reply to one request of a live session."""
        method, rid, params = message["method"], message["id"], message.get("params")
        if params is not None and not isinstance(params, dict):
            return error(rid, INVALID_PARAMS, "Invalid params: must be an object")
        params = params or {}
        try:
            if method == "ping":
                result = {}
            elif method == "tools/list":
                result = self.list_tools(params)
            elif method == "tools/call":
                result = self.call_tool(params)
            else:
                return error(rid, METHOD_NOT_FOUND, f"Method not found: {method}")
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": exc.to_dict()}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def list_tools(self, params):
        if params.get("cursor") is not None:
            raise RpcError(INVALID_PARAMS, "Invalid params: unknown cursor (the gateway lists every tool at once)")
        tools = []
        for server in self.registry.servers():
            if not self.visibility.sees(server.key):
                continue
            try:
                listed = server.tools()
            except (McpServerError, McpTimeout, RpcError) as exc:
                # one server down must not hide the others' tools; its failure is in the log
                logger.warning("mcp: tools/list of server %s failed: %s", server.key, exc)
                continue
            tools += [dict(tool, name=f"{server.key}.{tool['name']}") for tool in listed
                      if self.visibility.may_call(server.key, tool["name"])]
        return {"tools": tools}

    def call_tool(self, params):
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: name must be a string")
        if arguments is not None and not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: arguments must be an object")
        key, _, tool = name.partition(".")
        server = self.registry.get(key) if tool else None
        if server is None or not self.visibility.sees(key):
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        if not self.visibility.may_call(key, tool):
            raise RpcError(DENIED, f"Tool {name} is not allowed for this key")
        try:
            return server.client.call_tool(tool, arguments or {})
        except McpTimeout as exc:
            raise RpcError(UPSTREAM_TIMEOUT, exc.message) from None
        except McpServerError as exc:
            raise RpcError(UPSTREAM_FAILED, exc.message) from None
        except RpcError as exc:
            raise RpcError(exc.code, f"MCP server '{key}': {exc.message}", exc.data) from None
