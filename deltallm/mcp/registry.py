"""The MCP server registry: config servers plus those added through the admin API, with cached tool lists.

Like the model registry, stored servers come from a `loader` (the database) asked again at most once
per `refresh_interval` seconds, so every worker sees an added or deleted server within about a second.
"""
import logging
import threading
import time

from deltallm.mcp.client import McpClient
from deltallm.stored import StoredRows

logger = logging.getLogger(__name__)


def auth_headers(auth):
    """The HTTP headers a server's `auth` block stands for."""
    if auth["type"] == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    if auth["type"] == "headers":
        return dict(auth["headers"])
    return {}


class McpServer:
    """One upstream MCP server: its settings, its client (one session per worker) and its tool list."""

    def __init__(self, key, entry, source="config", timeout=60.0, cache_seconds=300.0):
        self.key, self.source = key, source
        self.url, self.auth, self.description = entry["url"], entry["auth"], entry.get("description")
        self.created_at = entry.get("created_at")
        self.cache_seconds = cache_seconds
        self.client = McpClient(key, self.url, auth_headers(self.auth), timeout=timeout,
                                on_list_changed=self.forget_tools)
        self.cached, self.fetched_at = None, float("-inf")
        self.lock = threading.Lock()

    def forget_tools(self):
        """The server said its tools changed (notifications/tools/list_changed): list them again."""
        self.fetched_at = float("-inf")

    def tools(self, deadline=None, refresh=False):
        """The server's tools, from the cache unless it is older than `cache_seconds` (or `refresh`)."""
        if not refresh and time.monotonic() - self.fetched_at < self.cache_seconds and self.cached is not None:
            return self.cached
        with self.lock:  # one tools/list at a time per server and worker
            if refresh or time.monotonic() - self.fetched_at >= self.cache_seconds or self.cached is None:
                tools = self.client.list_tools(deadline)
                self.cached, self.fetched_at = tools, time.monotonic()
        return self.cached

    def tool(self, name, deadline=None):
        """The named tool's definition, or None."""
        found = next((t for t in self.tools(deadline) if t["name"] == name), None)
        if found is None:  # perhaps added since the list was cached
            found = next((t for t in self.tools(deadline, refresh=True) if t["name"] == name), None)
        return found

    def close(self):
        self.client.close()


class McpRegistry:
    def __init__(self, config_servers=None, loader=None, refresh_interval=1.0, timeout=60.0, cache_seconds=300.0):
        self.options = {"timeout": timeout, "cache_seconds": cache_seconds}
        self.config = {key: McpServer(key, entry, "config", **self.options)
                       for key, entry in (config_servers or {}).items()}
        self.stored = StoredRows(loader, refresh_interval, "MCP servers")
        self.stamps = set()
        self.dynamic = {}

    def refresh(self, force=False):
        """Ask the loader for the stored servers if the last answer is older than the interval."""
        loaded = self.stored.load(self.stamps, force)
        if loaded is None:  # not due, unchanged, or the database failed (logged)
            return
        stamps, entries = loaded
        dynamic = {}
        for key, entry in entries.items():
            known = self.dynamic.get(key)
            same = known is not None and known.created_at == entry["created_at"]
            dynamic[key] = known if same else McpServer(key, entry, "db", **self.options)
        for key, gone in self.dynamic.items():
            if dynamic.get(key) is not gone:
                gone.close()
        self.dynamic, self.stamps = dynamic, stamps

    def get(self, key):
        self.refresh()
        return self.config.get(key) or self.dynamic.get(key)

    def servers(self):
        self.refresh()
        return list(self.config.values()) + [s for k, s in self.dynamic.items() if k not in self.config]

    def has(self, key):
        return self.get(key) is not None


class Visibility:
    """What one caller may see and call: the master key everything, a virtual key its `mcp_servers`
    allowlist (`server` for all its tools, `server.tool` for one; empty means nothing)."""

    def __init__(self, principal):
        self.everything = principal.is_master
        self.servers, self.tools = set(), set()
        for entry in principal.mcp_servers:
            server, dot, tool = entry.partition(".")
            (self.tools.add((server, tool)) if dot else self.servers.add(server))

    def sees(self, server_key):
        return self.everything or server_key in self.servers or any(s == server_key for s, _ in self.tools)

    def may_call(self, server_key, tool):
        return self.everything or server_key in self.servers or (server_key, tool) in self.tools
