"""MCP failures: transport faults of an upstream MCP server (gateway errors) and JSON-RPC errors."""
from deltallm.errors import UpstreamError, UpstreamTimeout

# JSON-RPC 2.0's standard codes, and the gateway's own (the implementation-defined -32000..-32099 range)
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = \
    -32700, -32600, -32601, -32602, -32603
DENIED, UPSTREAM_FAILED, UPSTREAM_TIMEOUT = -32003, -32004, -32005


class McpServerError(UpstreamError):
    """An upstream MCP server is down, refused us, dropped the session or answered garbage (502)."""
    code = "mcp_server_error"
    retryable = False


class McpTimeout(UpstreamTimeout):
    """An upstream MCP server did not answer within its deadline (504)."""
    code = "mcp_timeout"
    retryable = False


class RpcError(Exception):
    """A JSON-RPC error object: from an upstream server, or one the /mcp side answers with."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error
