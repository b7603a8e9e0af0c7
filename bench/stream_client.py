"""Streaming load driver: many concurrent streamed chat requests, time to first token, completeness.

    python bench/stream_client.py --url http://127.0.0.1:8000/v1/chat/completions \
        --streams 1000 --concurrency 1000 --ramp-s 2 --expect-chunks 20

Each of `--concurrency` workers owns one keep-alive connection and runs streams one after another
until `--streams` have started; worker starts are spread evenly over `--ramp-s` seconds. TTFT is
measured from sending the request (including the TCP connect on a new connection) to the first SSE
`data:` event whose choices[0].delta.content is non-empty. A stream is complete when it ends with
`data: [DONE]` after the expected number of content chunks; anything else counts as incomplete or
an error. Prints one JSON object (latencies in milliseconds).
"""
import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

try:
    from orjson import loads
except ImportError:
    from json import loads


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a list; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def summarize(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values), "mean": sum(values) / len(values)}


class Outcome:
    __slots__ = ("started", "ttft", "total", "contents", "done", "error", "status")

    def __init__(self, started):
        self.started = started
        self.ttft = None
        self.total = None
        self.contents = 0
        self.done = False
        self.error = None
        self.status = None


class SSE:
    """Incremental SSE parser feeding one Outcome."""

    def __init__(self, outcome):
        self.outcome = outcome
        self.buf = b""

    def feed(self, data):
        self.buf += data
        if b"\r" in self.buf:
            self.buf = self.buf.replace(b"\r\n", b"\n")
        while True:
            end = self.buf.find(b"\n\n")
            if end < 0:
                return
            block, self.buf = self.buf[:end], self.buf[end + 2:]
            payload = b"\n".join(line[5:].lstrip(b" ") for line in block.split(b"\n")
                                 if line.startswith(b"data:"))
            if payload:
                self.event(payload)

    def event(self, payload):
        out = self.outcome
        if payload == b"[DONE]":
            out.done = True
            return
        if out.done:
            out.error = out.error or "data after [DONE]"
            return
        try:
            obj = loads(payload)
        except ValueError:
            out.error = out.error or "event is not JSON"
            return
        if "error" in obj and not obj.get("choices"):
            out.error = out.error or f"error event: {str(obj['error'])[:120]}"
            return
        choices = obj.get("choices") or ()
        if choices and (choices[0].get("delta") or {}).get("content"):
            out.contents += 1
            if out.ttft is None:
                out.ttft = time.perf_counter() - out.started


class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def ensure(self):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def read_response(conn, outcome):
    """Read one HTTP/1.1 response, feeding its body to the SSE parser; returns keep-alive."""
    reader = conn.reader
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    outcome.status = int(status)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = version == b"HTTP/1.1" and headers.get(b"connection") != b"close"
    sse = SSE(outcome)
    body = []
    feed = sse.feed if outcome.status == 200 else body.append
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                break
            data = await reader.readexactly(size + 2)
            feed(data[:-2])
    elif b"content-length" in headers:
        feed(await reader.readexactly(int(headers[b"content-length"])))
    else:
        keep_alive = False
        while True:
            data = await reader.read(65536)
            if not data:
                break
            feed(data)
    if outcome.status != 200:
        outcome.error = f"HTTP {outcome.status}: {b''.join(body)[:160].decode(errors='replace')}"
    return keep_alive


class Driver:
    def __init__(self, opts):
        url = urlsplit(opts.url)
        self.opts = opts
        self.host, self.port = url.hostname, url.port or 80
        body = {"model": opts.model, "stream": True,
                "messages": [{"role": "user", "content": "Count from one to twenty."}]}
        data = json.dumps(body, separators=(",", ":")).encode()
        self.request = (f"POST {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                        f"Authorization: Bearer {opts.key}\r\nContent-Type: application/json\r\n"
                        f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
        self.outcomes = []
        self.remaining = opts.streams
        self.open = 0
        self.peak_open = 0
        self.connect_errors = 0

    async def one(self, conn):
        outcome = Outcome(time.perf_counter())
        self.outcomes.append(outcome)
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        keep = False
        try:
            await conn.ensure()
            conn.writer.write(self.request)
            keep = await asyncio.wait_for(read_response(conn, outcome), self.opts.timeout)
        except asyncio.TimeoutError:
            outcome.error = "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            outcome.error = f"{exc.__class__.__name__}: {exc}"[:160]
        finally:
            self.open -= 1
            outcome.total = time.perf_counter() - outcome.started
        if not keep or outcome.error:
            conn.close()

    async def worker(self, delay):
        if delay:
            await asyncio.sleep(delay)
        conn = Connection(self.host, self.port)
        try:
            while self.remaining > 0:
                self.remaining -= 1
                await self.one(conn)
        finally:
            conn.close()

    async def run(self):
        opts = self.opts
        workers = max(1, min(opts.concurrency, opts.streams))
        step = opts.ramp_s / workers if opts.ramp_s > 0 else 0.0
        started = time.perf_counter()
        await asyncio.gather(*(self.worker(i * step) for i in range(workers)))
        return self.report(time.perf_counter() - started, workers)

    def report(self, wall, workers):
        expect = self.opts.expect_chunks
        errors, incomplete, samples = 0, 0, []
        for o in self.outcomes:
            if o.error:
                errors += 1
                if len(samples) < 5:
                    samples.append(o.error)
            elif not o.done or (expect and o.contents != expect):
                incomplete += 1
                if len(samples) < 5:
                    samples.append(f"incomplete: done={o.done} contents={o.contents}")
        ms = 1000.0
        ttft = [o.ttft * ms for o in self.outcomes if o.ttft is not None and not o.error]
        total = [o.total * ms for o in self.outcomes if not o.error]
        return {"url": self.opts.url, "model": self.opts.model, "streams": len(self.outcomes),
                "concurrency": workers, "ramp_s": self.opts.ramp_s, "wall_s": round(wall, 3),
                "ok": len(self.outcomes) - errors - incomplete, "errors": errors,
                "incomplete": incomplete, "error_samples": samples, "peak_open": self.peak_open,
                "ttft_ms": summarize(ttft), "total_ms": summarize(total)}


def raise_nofile(need):
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        if soft < need:
            print(f"warning: open-files limit {soft} < {need} needed", file=sys.stderr)
    except (ImportError, ValueError, OSError):
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description="concurrent streaming chat load driver")
    p.add_argument("--url", required=True, help="…/v1/chat/completions")
    p.add_argument("--key", default="sk-bench")
    p.add_argument("--model", default="bench")
    p.add_argument("--streams", type=int, default=100, help="streams in total")
    p.add_argument("--concurrency", type=int, default=1, help="concurrent connections")
    p.add_argument("--ramp-s", type=float, default=0.0, help="spread connection starts over this")
    p.add_argument("--expect-chunks", type=int, default=0, help="content chunks a full stream has")
    p.add_argument("--timeout", type=float, default=120.0, help="per-stream timeout, seconds")
    opts = p.parse_args(argv)
    raise_nofile(opts.concurrency + 64)
    result = asyncio.run(Driver(opts).run())
    print(json.dumps(result))
    return 0 if result["errors"] == result["incomplete"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
