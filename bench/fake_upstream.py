"""A fast fake OpenAI upstream for the load benchmark: canned chat completions, plain or streamed.

A hand-written asyncio Protocol speaking just enough HTTP/1.1 (keep-alive, Content-Length request
bodies, chunked responses) so that one core answers many times faster than the gateway under test.

    python bench/fake_upstream.py --port 9100 [--chunks 20] [--chunk-delay-ms 0] [--latency-ms 0]

POST /v1/embeddings answers one canned embedding (after --latency-ms).
POST /v1/chat/completions answers a chat.completion, or, when the body has "stream": true, an SSE
stream: a role chunk, --chunks content chunks (--chunk-delay-ms apart; the first is sent at once),
a finish chunk, a usage chunk and `data: [DONE]`. GET /health answers 200.
"""
import argparse
import asyncio
import os
import signal
import time

try:
    import orjson

    dumps, loads = orjson.dumps, orjson.loads
except ImportError:  # orjson is a DeltaLLM dependency, but keep the fake runnable without it
    import json

    def dumps(obj):
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads

MAX_HEAD = 64 * 1024
CREATED = int(time.time())
USAGE = {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}

STATUS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
          413: b"Payload Too Large", 501: b"Not Implemented"}


# POST /v1/embeddings: one 256-dimension embedding, whatever the input (for the batch benchmark)
EMBEDDING = dumps({"object": "list", "model": "text-embedding-3-small",
                   "data": [{"object": "embedding", "index": 0, "embedding": [0.001 * i for i in range(256)]}],
                   "usage": {"prompt_tokens": 4, "total_tokens": 4}})


def plain_response(status, body, content_type=b"application/json", keep_alive=True):
    return b"".join((b"HTTP/1.1 %d %s\r\n" % (status, STATUS[status]),
                     b"Content-Type: " + content_type + b"\r\n",
                     b"Content-Length: %d\r\n" % len(body),
                     b"" if keep_alive else b"Connection: close\r\n",
                     b"\r\n", body))


def error_body(message, etype="invalid_request_error"):
    return dumps({"error": {"message": message, "type": etype, "param": None, "code": None}})


def chunk_frame(payload):
    """One SSE event as one HTTP chunk."""
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Canned:
    """Pre-encoded responses per upstream model name (the request's `model` is echoed back)."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.cache = {}

    def get(self, model):
        found = self.cache.get(model)
        if found is None:
            if len(self.cache) > 64:
                self.cache.clear()
            found = self.cache[model] = self.build(model)
        return found

    def build(self, model):
        n = self.chunks
        usage = dict(USAGE, completion_tokens=n, total_tokens=USAGE["prompt_tokens"] + n)
        completion = dumps({
            "id": "chatcmpl-bench0000000000000000000000", "object": "chat.completion",
            "created": CREATED, "model": model, "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the fake upstream!",
                                                 "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage})

        def chunk(delta, finish=None, choices=True, with_usage=None):
            obj = {"id": "chatcmpl-bench0000000000000000000000", "object": "chat.completion.chunk",
                   "created": CREATED, "model": model, "system_fingerprint": "fp_bench",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                   if choices else []}
            if with_usage is not None:
                obj["usage"] = with_usage
            return chunk_frame(dumps(obj))

        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        first = head + chunk({"role": "assistant", "content": ""})
        contents = [chunk({"content": f"tok{i} "}) for i in range(n)]
        tail = (chunk({}, finish="stop") + chunk(None, choices=False, with_usage=usage)
                + chunk_frame(b"[DONE]") + b"0\r\n\r\n")
        return {"completion": plain_response(200, completion), "first": first,
                "contents": contents, "tail": tail}


class HTTPProtocol(asyncio.Protocol):
    __slots__ = ("opts", "canned", "transport", "buf", "head", "need", "busy", "timers", "closed")

    def __init__(self, opts, canned):
        self.opts = opts
        self.canned = canned
        self.transport = None
        self.buf = bytearray()
        self.head = None  # (method, path, keep_alive) while waiting for a body
        self.need = 0
        self.busy = False  # a delayed or streamed response is in flight
        self.timers = []
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        for timer in self.timers:
            timer.cancel()
        self.timers = []

    def data_received(self, data):
        self.buf += data
        self.process()

    def process(self):
        buf = self.buf
        while not self.busy and not self.closed:
            if self.head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        self.fail(413, "request head too large")
                    return
                if not self.parse_head(bytes(buf[:end])):
                    return
                del buf[:end + 4]
            if len(buf) < self.need:
                return
            body = bytes(buf[:self.need])
            del buf[:self.need]
            method, path, keep_alive = self.head
            self.head, self.need = None, 0
            self.respond(method, path, body, keep_alive)

    def parse_head(self, head):
        lines = head.split(b"\r\n")
        try:
            method, path, version = lines[0].split(b" ", 2)
        except ValueError:
            self.fail(400, "bad request line")
            return False
        keep_alive = version == b"HTTP/1.1"
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self.fail(400, "bad Content-Length")
                    return False
            elif name == b"connection":
                value = value.strip().lower()
                keep_alive = value == b"keep-alive" or (keep_alive and value != b"close")
            elif name == b"transfer-encoding":
                self.fail(501, "chunked request bodies are not supported")
                return False
        self.head, self.need = (method, path.split(b"?", 1)[0], keep_alive), length
        return True

    def fail(self, status, message):
        self.transport.write(plain_response(status, error_body(message), keep_alive=False))
        self.transport.close()
        self.closed = True

    def respond(self, method, path, body, keep_alive):
        if path.endswith(b"/chat/completions"):
            if method != b"POST":
                return self.send(plain_response(405, error_body("use POST")), keep_alive)
            try:
                req = loads(body)
                model = str(req.get("model") or "gpt-4o-mini")
            except Exception:  # noqa: BLE001 - any bad body is a 400
                return self.send(plain_response(400, error_body("body is not a JSON object")), keep_alive)
            canned = self.canned.get(model)
            stream = req.get("stream") is True
            if self.opts.latency_ms > 0:
                self.busy = True
                self.later(self.opts.latency_ms, self.start, canned, stream, keep_alive)
            else:
                self.start(canned, stream, keep_alive)
        elif path.endswith(b"/embeddings") and method == b"POST":
            answer = plain_response(200, EMBEDDING, keep_alive=keep_alive)
            if self.opts.latency_ms > 0:
                self.busy = True
                self.later(self.opts.latency_ms, self.finish, answer, keep_alive)
            else:
                self.send(answer, keep_alive)
        elif method == b"GET" and path in (b"/health", b"/v1/models"):
            self.send(plain_response(200, b'{"status":"ok"}'), keep_alive)
        else:
            self.send(plain_response(404, error_body("not found")), keep_alive)

    def start(self, canned, stream, keep_alive):
        if self.closed:
            return
        if not stream:
            return self.finish(canned["completion"], keep_alive)
        contents = canned["contents"]
        delay = self.opts.chunk_delay_ms
        if delay <= 0 or len(contents) <= 1:
            return self.finish(b"".join([canned["first"], *contents, canned["tail"]]), keep_alive)
        self.busy = True
        self.transport.write(canned["first"] + contents[0])
        self.later(delay, self.next_chunk, canned, 1, keep_alive)

    def next_chunk(self, canned, i, keep_alive):
        if self.closed:
            return
        contents = canned["contents"]
        if i == len(contents) - 1:
            return self.finish(contents[i] + canned["tail"], keep_alive)
        self.transport.write(contents[i])
        self.later(self.opts.chunk_delay_ms, self.next_chunk, canned, i + 1, keep_alive)

    def later(self, ms, func, *args):
        timers = self.timers

        def fire():
            timers.remove(handle)
            func(*args)

        handle = asyncio.get_running_loop().call_later(ms / 1000.0, fire)
        timers.append(handle)

    def finish(self, data, keep_alive):
        deferred, self.busy = self.busy, False
        self.send(data, keep_alive)
        if deferred and self.buf and not self.closed:
            self.process()  # a request that arrived while this answer was in flight

    def send(self, data, keep_alive):
        self.transport.write(data)
        if not keep_alive:
            self.transport.close()
            self.closed = True


def raise_nofile():
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


async def serve(opts):
    loop = asyncio.get_running_loop()
    canned = Canned(opts.chunks)
    server = await loop.create_server(lambda: HTTPProtocol(opts, canned), opts.host, opts.port,
                                      backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{opts.host}:{opts.port}/v1 (pid {os.getpid()}, chunks={opts.chunks}, "
          f"chunk_delay_ms={opts.chunk_delay_ms}, latency_ms={opts.latency_ms})", flush=True)
    async with server:
        await stop.wait()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    p.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between content chunks")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay before each response starts")
    opts = p.parse_args(argv)
    if opts.chunks < 1:
        p.error("--chunks must be >= 1")
    raise_nofile()
    try:
        import uvloop  # optional; not a DeltaLLM dependency
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(opts))


if __name__ == "__main__":
    main()
