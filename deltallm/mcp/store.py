"""MCP servers added through the admin API: stored in the database with their token and headers sealed."""
import orjson

from deltallm.db import connection
from deltallm.models import McpServerRow


def loader(box):
    """A registry loader: None while the stored (key, created_at) pairs equal `known`, else
    (stamps, {key: entry}) for every stored server."""
    def load(known):
        with connection():
            stamps = {(row.server_key, str(row.created_at))
                      for row in McpServerRow.select(McpServerRow.server_key, McpServerRow.created_at)}
            if stamps == known:
                return None
            rows = list(McpServerRow.select().order_by(McpServerRow.created_at, McpServerRow.server_key))
        return stamps, {row.server_key: entry(box, row) for row in rows}
    return load


def entry(box, row):
    hidden = orjson.loads(box.open(row.sealed)) if row.sealed else {}
    return {"url": row.url, "description": row.description, "created_at": row.created_at,
            "auth": {"type": row.auth_type, "token": hidden.get("token"), "headers": hidden.get("headers")}}


def store(box, key, server):
    """Save one server (an entry from config_sections.mcp_server_entry); credentials are sealed (refused
    without an encryption key)."""
    auth = server["auth"]
    hidden = {k: auth[k] for k in ("token", "headers") if auth.get(k)}
    sealed = box.seal(orjson.dumps(hidden).decode(), param="auth") if hidden else None
    with connection():
        return McpServerRow.create(server_key=key, url=server["url"], auth_type=auth["type"], sealed=sealed,
                                   description=server.get("description"))


def exists(key):
    with connection():
        return McpServerRow.get_or_none(McpServerRow.server_key == key) is not None


def delete(key):
    with connection():
        return McpServerRow.delete().where(McpServerRow.server_key == key).execute() > 0
