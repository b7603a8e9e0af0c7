"""A fake upstream process for end-to-end tests, speaking real provider wire formats.

Run: python -m tests.fakes.server PORT. Every provider module under tests/fakes/ contributes
ROUTES = [(method, regex, handler)]; handler(req) returns (status, headers, body) where body is
bytes or an iterator of bytes (streamed as it is produced). Behaviour is steered by the request
itself so tests stay deterministic: see each module's docstring. Every request is recorded and
can be read back with GET /_requests (and cleared with DELETE /_requests).
"""
from gevent import monkey

monkey.patch_all()

import importlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import orjson  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from tests.fakes import common  # noqa: E402

PROVIDERS = ["openai", "anthropic", "gemini", "bedrock", "azure", "rerank"]
RECORDED = []
MAX_RECORDED = 1024 * 1024  # of a request body (a 20 MB upload is not kept whole)


class Req:
    def __init__(self, environ, match):
        self.environ = environ
        self.match = match
        self.method = environ["REQUEST_METHOD"]
        self.path = environ["PATH_INFO"]
        self.query = environ.get("QUERY_STRING", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            self.raw = environ["wsgi.input"].read()  # a streamed upload: read to its last chunk
        else:
            self.raw = environ["wsgi.input"].read(length) if length else b""
        self.headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                        if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            self.headers["content-type"] = environ["CONTENT_TYPE"]

    def json(self):
        return orjson.loads(self.raw) if self.raw else None


def load_routes():
    routes = []
    for name in PROVIDERS:
        try:
            module = importlib.import_module(f"tests.fakes.{name}")
        except ImportError:
            continue
        routes += [(m, re.compile(p), h) for m, p, h in module.ROUTES]
    return routes


ROUTES = load_routes()
STATUS = {200: "200 OK", 201: "201 Created", 400: "400 Bad Request", 401: "401 Unauthorized",
          403: "403 Forbidden", 404: "404 Not Found", 408: "408 Request Timeout",
          429: "429 Too Many Requests", 500: "500 Internal Server Error", 502: "502 Bad Gateway",
          503: "503 Service Unavailable", 529: "529 Overloaded"}


def app(environ, start_response):
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/_streams":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [orjson.dumps(common.STREAMS)]
    if path == "/_requests":
        if method == "DELETE":
            RECORDED.clear()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [orjson.dumps(RECORDED)]
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match and route_method == method:
            req = Req(environ, match)
            RECORDED.append({"method": method, "path": path, "query": req.query,
                             "headers": req.headers, "body": req.raw[:MAX_RECORDED].decode("utf-8", "replace")})
            status, headers, body = handler(req)
            start_response(STATUS.get(status, f"{status} Status"), headers)
            return [body] if isinstance(body, bytes) else body
    start_response("404 Not Found", [("Content-Type", "application/json")])
    return [orjson.dumps({"error": {"message": f"fake upstream has no route {method} {path}",
                                    "type": "invalid_request_error"}})]


def main():
    port = int(sys.argv[1])
    print(f"fake upstream listening on {port}", flush=True)
    WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


if __name__ == "__main__":
    main()
