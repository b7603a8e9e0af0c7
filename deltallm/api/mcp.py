"""POST /mcp and DELETE /mcp: the MCP gateway for clients (Streamable HTTP, JSON replies)."""
import orjson
from flask import Blueprint, Response, g, request

from deltallm.api import body as request_body
from deltallm.api.common import JSON, gateway
from deltallm.mcp.errors import PARSE_ERROR
from deltallm.mcp.server import McpGateway, Reply, error

bp = Blueprint("mcp", __name__)


def send(reply):
    body = b"" if reply.body is None else orjson.dumps(reply.body)
    return Response(body, status=reply.status, mimetype=JSON, headers=reply.headers)


def mcp_gateway():
    gw = gateway()
    return McpGateway(gw.mcp, gw.mcp_sessions, g.principal)


@bp.post("/mcp")
def post():
    raw = request_body.read(request.environ, gateway().max_body_bytes)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return send(Reply(400, error(None, PARSE_ERROR, "Parse error: the body is not JSON")))
    return send(mcp_gateway().post(payload, request.headers.get("Mcp-Session-Id"),
                                   request.headers.get("MCP-Protocol-Version")))


@bp.delete("/mcp")
def end_session():
    gateway_ = mcp_gateway()
    session_id = request.headers.get("Mcp-Session-Id")
    _, refusal = gateway_.session(session_id, None)
    if refusal is not None:
        return send(refusal)
    gateway_.sessions.end(session_id)
    return send(Reply(200))
