"""In-process HTTP servers for tests that need real sockets: a scripted upstream and a forward proxy.

`Scripted` answers every request with the test's own function, handler(req) -> (status, headers,
body), where body is bytes or an iterator of bytes (written and flushed piece by piece, so it can
drip). `ForwardProxy` is a plain-HTTP forward proxy that records the absolute URLs it forwards.
"""
import http.server
import socket
import threading
import time
import urllib.request


class Req:
    def __init__(self, handler):
        self.method = handler.command
        self.path = handler.path
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Scripted:
    def __init__(self, handler=None):
        self.handler = handler
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                req = Req(self)
                owner.requests.append(req)
                status, headers, body = owner.handler(req)
                self.send_response(status)
                chunked = not isinstance(body, bytes) and not any(k.lower() == "content-length" for k, _ in headers)
                for name, value in headers:
                    self.send_header(name, value)
                if isinstance(body, bytes):
                    self.send_header("Content-Length", str(len(body)))
                elif chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if isinstance(body, bytes):
                        self.wfile.write(body)
                        return
                    for piece in body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                        self.wfile.flush()
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the gateway gave up on us: that is what most tests want
                    self.close_connection = True

            do_GET = do_POST

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def drip(data, every):
    """`data` one byte at a time, `every` seconds apart."""
    for i in range(len(data)):
        if i:
            time.sleep(every)
        yield data[i:i + 1]


class ForwardProxy:
    """Forwards absolute-URL requests (plain HTTP only) and records them in `seen`."""

    def __init__(self):
        self.seen = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.seen.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("proxy-connection", "connection", "host")}
                request = urllib.request.Request(self.path, data=body, headers=headers, method=self.command)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(request, timeout=10) as resp:
                        status, out_headers, data = resp.status, resp.headers.items(), resp.read()
                except urllib.error.HTTPError as err:
                    status, out_headers, data = err.code, err.headers.items(), err.read()
                self.send_response(status)
                for name, value in out_headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port():
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
