"""A fake MCP server (Streamable HTTP, written from the MCP specification) for tests and the benchmark.

`FakeMcp()` starts it on a free local port in a background thread; `url` is its endpoint. Its tools:
echo {text}, add {a, b} (structured content too), fail (an isError result), big {size} (that many
bytes of text), slow {seconds}, and `search.docs` {query} (a name with a dot). Knobs: `reply` =
"json" | "sse" (an SSE reply sends a progress notification before the result), `page_size` (tools/list
pagination), `token` (bearer token required), `garbage` (answer non-JSON), `list_changed` (send
notifications/tools/list_changed inside the next SSE reply), `expire()` (forget every session: old ids get
404), `forget` (keep no session at all: every request after initialize gets 404). `requests` records (method name, session id, headers) of every JSON-RPC message received.
Run standalone: python -m tests.fakes.mcp PORT.
"""
import http.server
import itertools
import socket
import json
import sys
import threading
import time
import uuid

TOOLS = [
    {"name": "echo", "description": "Echo the text back",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "add", "description": "Add two numbers",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                     "required": ["a", "b"]}},
    {"name": "fail", "description": "Always fails", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "big", "description": "A long answer",
     "inputSchema": {"type": "object", "properties": {"size": {"type": "integer", "default": 200000}},
                     "required": ["size"]}},
    {"name": "slow", "description": "Answers after a while",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}},
    {"name": "search.docs", "description": "Search the docs",
     "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
]
VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")


def text(value):
    return {"content": [{"type": "text", "text": value}], "isError": False}


def run_tool(name, args):
    if name == "echo":
        return text(f"echo: {args.get('text', args.get('q'))}")  # `q`: what the fake upstreams send
    if name == "add":
        total = args["a"] + args["b"]
        return {"content": [{"type": "text", "text": str(total)}], "structuredContent": {"sum": total},
                "isError": False}
    if name == "fail":
        return {"content": [{"type": "text", "text": "tool failed on purpose"}], "isError": True}
    if name == "big":
        return text("x" * int(args["size"]))
    if name == "slow":
        time.sleep(float(args["seconds"]))
        return text("done")
    if name == "search.docs":
        return text(f"found: {args.get('query')}")
    return None


class FakeMcp:
    def __init__(self, port=0, reply="json", page_size=None, token=None, host="127.0.0.1"):
        self.reply, self.page_size, self.token = reply, page_size, token
        self.garbage = self.list_changed = self.forget = False
        self.sessions = set()
        self.requests = []
        self.connections = []
        self.ids = itertools.count(1)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as real servers do: no 40 ms delayed-ACK stall per answer

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                owner.connections.append(self.connection)

            def do_POST(self):
                owner.post(self)

            def do_DELETE(self):
                owner.sessions.discard(self.headers.get("Mcp-Session-Id"))
                owner.send(self, 200, b"", "application/json")

            def do_GET(self):
                owner.send(self, 405, b"", "application/json")

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/mcp"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        """Stop, and cut the kept-alive connections too: a server that is down answers nothing."""
        self.server.shutdown()
        self.server.server_close()
        for sock in self.connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def expire(self):
        self.sessions.clear()

    # -- HTTP ---------------------------------------------------------------------------------
    def send(self, handler, status, body, kind, headers=()):
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", kind)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up waiting (a deadline test)

    def post(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        if self.token and handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self.send(handler, 401, b'{"error": "unauthorized"}', "application/json")
        message = json.loads(raw)
        session = handler.headers.get("Mcp-Session-Id")
        self.requests.append({"method": message.get("method"), "session": session,
                              "headers": {k.lower(): v for k, v in handler.headers.items()},
                              "params": message.get("params")})
        method = message.get("method")
        if method != "initialize" and (session not in self.sessions or self.forget):
            return self.send(handler, 404 if session else 400, b"", "application/json")
        if "id" not in message:
            return self.send(handler, 202, b"", "application/json")
        headers = []
        if method == "initialize":
            session = uuid.uuid4().hex
            self.sessions.add(session)
            headers.append(("Mcp-Session-Id", session))
        if self.garbage:
            return self.send(handler, 200, b"<html>not json</html>", "application/json", headers)
        reply = {"jsonrpc": "2.0", "id": message["id"], **self.answer(method, message.get("params") or {})}
        if self.reply == "json":
            return self.send(handler, 200, json.dumps(reply).encode(), "application/json", headers)
        events = [{"jsonrpc": "2.0", "method": "notifications/progress",
                   "params": {"progressToken": 1, "progress": 0.5}}]
        if self.list_changed:
            self.list_changed = False
            events.append({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        body = b"".join(b"event: message\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events + [reply])
        self.send(handler, 200, b"id: 0\ndata: \n\n" + body, "text/event-stream", headers)

    def answer(self, method, params):
        if method == "initialize":
            wanted = params.get("protocolVersion")
            return {"result": {"protocolVersion": wanted if wanted in VERSIONS else VERSIONS[0],
                               "capabilities": {"tools": {"listChanged": True}},
                               "serverInfo": {"name": "fake-mcp", "version": "1.0"}}}
        if method == "ping":
            return {"result": {}}
        if method == "tools/list":
            start = int(params.get("cursor") or 0)
            size = self.page_size or len(TOOLS)
            result = {"tools": TOOLS[start:start + size]}
            if start + size < len(TOOLS):
                result["nextCursor"] = str(start + size)
            return {"result": result}
        if method == "tools/call":
            result = run_tool(params.get("name"), params.get("arguments") or {})
            if result is None:
                return {"error": {"code": -32602, "message": f"Unknown tool: {params.get('name')}"}}
            return {"result": result}
        return {"error": {"code": -32601, "message": f"Method not found: {method}"}}


if __name__ == "__main__":
    server = FakeMcp(port=int(sys.argv[1]), reply=sys.argv[2] if len(sys.argv) > 2 else "json")
    print(server.url, flush=True)
    server.thread.join()
