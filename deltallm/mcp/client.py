"""A blocking MCP client over the Streamable HTTP transport (made cooperative by gevent's patching).

One client per upstream server, shared by the worker's requests: it initializes lazily, keeps the
server's `Mcp-Session-Id`, and initializes again when the server has forgotten the session (404).
"""
import itertools
import logging
import socket
import threading
import time

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from deltallm import __version__
from deltallm.errors import UpstreamError, UpstreamTimeout
from deltallm.mcp.errors import McpServerError, McpTimeout, RpcError
from deltallm.providers.base import connection_problem
from deltallm.providers.streams import iter_sse
from deltallm.providers.transport import AttemptDeadline, cooperative

logger = logging.getLogger(__name__)

# Newest first: what we offer in `initialize`; a server may answer with any of these.
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MAX_PAGES = 100          # tools/list pages followed before giving up on a server's cursor
MAX_BODY = 64 << 20      # a JSON reply larger than this is garbage, not a tool result
CLIENT_INFO = {"name": "deltallm", "version": __version__}


class SessionExpired(Exception):
    """The server answered 404 to a request carrying our session id: initialize again."""


class McpClient:
    def __init__(self, key, url, headers=None, timeout=60.0, connect_timeout=5.0, on_list_changed=None):
        self.key, self.url = key, url
        self.headers = dict(headers or {})
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)
        self.on_list_changed = on_list_changed
        self.http = requests.Session()
        self.http.trust_env = False  # an MCP server address is the operator's, never a proxy's guess
        self.http.mount("http://", HTTPAdapter(pool_maxsize=32))
        self.http.mount("https://", HTTPAdapter(pool_maxsize=32))
        self.session_id = None
        self.version = None
        self.server_info = None
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    # -- the protocol ---------------------------------------------------------------------------
    def request(self, method, params=None, deadline=None):
        """The `result` of one JSON-RPC request; RpcError for an error reply, McpServerError or
        McpTimeout for transport faults. A forgotten session is re-initialized once."""
        deadline = self.deadline(deadline)
        self.ensure_session(deadline)
        try:
            return self.exchange(method, params, deadline)
        except SessionExpired:
            logger.info("mcp server %s: session expired; initializing again", self.key)
            self.reset()
            self.ensure_session(deadline)
            try:
                return self.exchange(method, params, deadline)
            except SessionExpired:
                raise McpServerError(f"MCP server '{self.key}' dropped the session again right after "
                                     "a new one was initialized") from None

    def list_tools(self, deadline=None):
        """Every tool of the server, following `nextCursor` pages."""
        tools, cursor, seen = [], None, set()
        for _ in range(MAX_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else {}, deadline)
            page = result.get("tools") if isinstance(result, dict) else None
            if not isinstance(page, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                     for t in page):
                raise McpServerError(f"MCP server '{self.key}' answered tools/list with no valid `tools` array")
            tools += page
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
            if not isinstance(cursor, str) or cursor in seen:
                raise McpServerError(f"MCP server '{self.key}' sent a bad or repeated tools/list cursor")
            seen.add(cursor)
        raise McpServerError(f"MCP server '{self.key}' has more than {MAX_PAGES} pages of tools")

    def call_tool(self, name, arguments, deadline=None):
        result = self.request("tools/call", {"name": name, "arguments": arguments}, deadline)
        if not isinstance(result, dict):
            raise McpServerError(f"MCP server '{self.key}' answered tools/call with a result that is not an object")
        return result

    def ensure_session(self, deadline):
        if self.version is not None:
            return
        with self.lock:  # one initialize per client, however many requests wait for it
            if self.version is None:
                self.initialize(deadline)

    def initialize(self, deadline):
        params = {"protocolVersion": PROTOCOL_VERSIONS[0], "capabilities": {}, "clientInfo": CLIENT_INFO}
        result = self.exchange("initialize", params, deadline, handshake=True)
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if version not in PROTOCOL_VERSIONS:
            raise McpServerError(f"MCP server '{self.key}' speaks protocol version {version!r}; the gateway "
                                 f"supports {', '.join(PROTOCOL_VERSIONS)}")
        self.version, self.server_info = version, result.get("serverInfo")
        try:
            self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, deadline)
        except SessionExpired:
            self.reset()
            raise McpServerError(f"MCP server '{self.key}' forgot the session it had just opened") from None

    def reset(self):
        self.session_id = self.version = None

    def close(self):
        """End the session on the server (DELETE), then drop the connection pool."""
        if self.session_id:
            try:
                self.http.delete(self.url, headers=self.request_headers(), timeout=(self.connect_timeout, 5))
            except requests.RequestException:
                pass
        self.reset()
        self.http.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def deadline(self, deadline):
        own = time.monotonic() + self.timeout
        return own if deadline is None else min(deadline, own)

    def request_headers(self):
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "User-Agent": f"deltallm/{__version__}", **self.headers}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.version:
            headers["MCP-Protocol-Version"] = self.version
        return headers

    def exchange(self, method, params, deadline, handshake=False):
        rid = next(self.ids)
        message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        return self.post(message, deadline, rid, handshake)

    def post(self, message, deadline, rid=None, handshake=False):
        """POST one message; for a request, read its reply (JSON or an SSE stream) under the deadline."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise McpTimeout(f"MCP server '{self.key}': no time left for {message.get('method')}")
        sent_session = self.session_id
        try:
            with AttemptDeadline(left, cooperative()):
                resp = self.http.post(self.url, data=orjson.dumps(message), headers=self.request_headers(),
                                      timeout=(min(self.connect_timeout, left), left), stream=True)
                try:
                    return self.reply(resp, rid, handshake, sent_session, deadline)
                finally:
                    resp.close()
        except (requests.Timeout, socket.timeout, TimeoutError, ReadTimeoutError):
            raise McpTimeout(f"MCP server '{self.key}' did not answer {message.get('method')} within "
                             f"{left:.3g} s") from None
        except (requests.RequestException, ProtocolError, OSError) as exc:
            raise McpServerError(f"MCP server '{self.key}' is unreachable: {connection_problem(exc)}") from None

    def reply(self, resp, rid, handshake, sent_session, deadline):
        status = resp.status_code
        if status == 404 and sent_session:
            raise SessionExpired()
        if status in (401, 403):
            raise McpServerError(f"MCP server '{self.key}' refused the gateway's credentials (HTTP {status})")
        if status >= 400:
            raise McpServerError(f"MCP server '{self.key}' answered HTTP {status}")
        if rid is None:
            return None  # a notification: 202, nothing to read
        if handshake and resp.headers.get("Mcp-Session-Id"):
            self.session_id = resp.headers["Mcp-Session-Id"]
        kind = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind == "text/event-stream":
            return self.from_stream(resp, rid, deadline)
        if kind != "application/json":
            raise McpServerError(f"MCP server '{self.key}' answered with Content-Type {kind or 'none'!r}, "
                                 "not JSON or an event stream")
        body = resp.raw.read(MAX_BODY + 1, decode_content=True)
        if len(body) > MAX_BODY:
            raise McpServerError(f"MCP server '{self.key}' sent a reply larger than {MAX_BODY >> 20} MB")
        try:
            messages = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise McpServerError(f"MCP server '{self.key}' answered with invalid JSON") from None
        for item in messages if isinstance(messages, list) else [messages]:
            found = self.handle(item, rid)
            if found is not None:
                return found[0]
        raise McpServerError(f"MCP server '{self.key}' answered without a reply to request {rid}")

    def from_stream(self, resp, rid, deadline):
        try:
            for _event, data in iter_sse(resp):
                if time.monotonic() > deadline:
                    raise McpTimeout(f"MCP server '{self.key}' did not finish its reply in time")
                if not data.strip():
                    continue  # a priming event (an id for resumption, no message)
                try:
                    message = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise McpServerError(f"MCP server '{self.key}' sent an event that is not JSON") from None
                found = self.handle(message, rid)
                if found is not None:
                    return found[0]
        except (McpServerError, McpTimeout):
            raise
        except UpstreamTimeout:
            raise McpTimeout(f"MCP server '{self.key}' went silent in the middle of its reply") from None
        except UpstreamError as exc:  # the stream broke, or one event was over the size bound
            raise McpServerError(f"MCP server '{self.key}': {exc.message}") from None
        raise McpServerError(f"MCP server '{self.key}' ended its event stream without a reply")

    def handle(self, message, rid):
        """(result,) when `message` is the reply to `rid`; None for notifications and server requests."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise McpServerError(f"MCP server '{self.key}' sent a message that is not JSON-RPC 2.0")
        if "method" in message:
            if message["method"] == "notifications/tools/list_changed" and self.on_list_changed:
                self.on_list_changed()
            return None  # other notifications (progress, logs) and server requests are not for us
        if message.get("id") != rid:
            return None
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            code = error.get("code") if isinstance(error.get("code"), int) else -32603
            raise RpcError(code, str(error.get("message") or "error"), error.get("data"))
        if "result" not in message:
            raise McpServerError(f"MCP server '{self.key}' sent a reply with neither result nor error")
        return (message["result"],)
