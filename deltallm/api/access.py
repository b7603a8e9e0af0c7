"""One access-log line per request: who called, which model and deployment, status, time and tokens.

The line is built from one dict and written to stderr in one write (JSON or readable text); a
streamed answer is logged when the stream ends, from values captured while the request context still
existed. The key itself is never logged, only its id. It is written directly rather than through a
logging.Logger: a LogRecord costs about ten times the line itself on the hot path.
"""
import logging
import sys
import threading
import time

import orjson

FORMATS = ("json", "text", "off")
# write: where lines go (None: access logging is off and costs nothing)
settings = {"format": "text", "write": None}


def init(log_format):
    """Pick the format (None: JSON under gunicorn when stderr is not a terminal, else text)."""
    server = logging.getLogger("gunicorn.error")
    under_gunicorn = bool(server.handlers)
    if log_format not in FORMATS:
        if log_format:
            logging.getLogger("deltallm").warning(
                "DELTALLM_LOG_FORMAT=%s is not one of %s: using the default", log_format, ", ".join(FORMATS))
        log_format = "json" if under_gunicorn and not sys.stderr.isatty() else "text"
    settings["format"] = log_format
    # DELTALLM_LOG_LEVEL=warning (or above) silences it like the server's other info lines
    quiet = under_gunicorn and server.level > logging.INFO
    # under gunicorn lines are buffered briefly; elsewhere (a terminal, tests) each is written at once
    settings["write"] = None if log_format == "off" or quiet else (Buffered(to_stderr) if under_gunicorn
                                                                   else to_stderr)


def to_stderr(line):
    sys.stderr.write(line)  # looked up per line: whoever replaced sys.stderr since (tests) gets it


class Buffered:
    """Lines written in bunches, not one write each (a syscall per request shows in the profile):
    at 64 lines, after 200 ms, and from an idle flush; `flush()` at worker exit sends the rest."""

    def __init__(self, write, lines=64, seconds=0.2):
        self.write, self.lines, self.seconds = write, lines, seconds
        self.pending, self.since = [], time.monotonic()
        self.flusher = None

    def __call__(self, line):
        self.pending.append(line)
        if len(self.pending) >= self.lines or time.monotonic() - self.since >= self.seconds:
            self.flush()
        elif self.flusher is None:
            self.flusher = threading.Thread(target=self.idle_flush, name="access-log", daemon=True)
            self.flusher.start()

    def flush(self):
        pending, self.pending, self.since = self.pending, [], time.monotonic()
        if pending:
            self.write("".join(pending))

    def idle_flush(self):
        tick = threading.Event()
        while True:
            tick.wait(self.seconds)
            if self.pending and time.monotonic() - self.since >= self.seconds:
                self.flush()


def flush():
    """Write buffered lines now (worker exit)."""
    write = settings["write"]
    if isinstance(write, Buffered):
        write.flush()


def enabled():
    return settings["write"] is not None


def entry(request, g, response, call, elapsed_s):
    """The line's fields, from the request context (the caller checked `enabled()`)."""
    principal = g.get("principal")
    rule = request.url_rule
    upstream_s = call.upstream_s if call is not None else 0.0
    deployment = call.deployment if call is not None else None
    record = {
        "time": None, "request_id": g.get("request_id"),
        "key_id": None if principal is None else ("master" if principal.is_master else principal.key_id),
        "method": request.method, "path": rule.rule if rule is not None else request.environ.get("PATH_INFO", "")[:200],
        "model": g.get("model"), "deployment": deployment.id if deployment is not None else None,
        "status": response.status_code,
        "upstream_ms": round(upstream_s * 1000, 2) if call is not None else None,
        "overhead_ms": round((elapsed_s - upstream_s) * 1000, 2),
        "duration_ms": round(elapsed_s * 1000, 2),
        "prompt_tokens": None, "completion_tokens": None, "total_tokens": None,
        "stream": False,
    }
    add_tokens(record, g.get("usage"))
    return record


def add_tokens(record, usage):
    if isinstance(usage, dict):
        record["prompt_tokens"] = usage.get("prompt_tokens", usage.get("input_tokens"))
        record["completion_tokens"] = usage.get("completion_tokens", usage.get("output_tokens"))
        record["total_tokens"] = usage.get("total_tokens")


def emit(record):
    now = time.time()
    record["time"] = f"{timestamp(int(now))}.{int(now % 1 * 1000):03d}Z"
    line = orjson.dumps(record).decode() if settings["format"] == "json" else text(record)
    settings["write"](line + "\n")


def timestamp(second):
    """The line's date and time to the second; lines of the same second share one formatting."""
    cached = _STAMP[0]
    if cached[0] != second:
        cached = _STAMP[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return cached[1]


_STAMP = [(None, "")]


def text(r):
    tokens = "-"
    if r["total_tokens"] is not None:
        tokens = f"{r['prompt_tokens']}/{r['completion_tokens']}/{r['total_tokens']}"
    return (f"{r['time']} {r['request_id']} {r['method']} {r['path']} {r['status']} key={r['key_id'] or '-'} "
            f"model={r['model'] or '-'} deployment={r['deployment'] or '-'} upstream_ms={r['upstream_ms']} "
            f"overhead_ms={r['overhead_ms']} duration_ms={r['duration_ms']} tokens={tokens} "
            f"stream={'true' if r['stream'] else 'false'}")


def track_last(events, tail):
    """Pass events through, keeping the last one: a stream's usage, if any, is in its final event."""
    try:
        for item in events:
            tail[0] = item
            yield item
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


class AfterClose:
    """A response body that calls `callback` when the server closes it (after the last byte, or on
    disconnect). Response.call_on_close is skipped for direct_passthrough bodies such as our streams."""

    def __init__(self, body, callback):
        self.body = body
        self.callback = callback

    def __iter__(self):
        return iter(self.body)

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.callback()


def at_stream_end(record, call, tail, started):
    """A callback for AfterClose: completes and writes the line once the stream is over."""
    def finish():
        if call is not None:
            record["upstream_ms"] = round(call.upstream_s * 1000, 2)
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        usage = call.sink.usage if call is not None else None
        if usage is not None:
            add_tokens(record, usage)
        else:
            last = tail[0] if tail is not None else None
            if last and b'"usage"' in last:
                add_tokens(record, usage_of(last))
        emit(record)
    return finish


def usage_of(encoded_event):
    """`usage` of an encoded SSE event (a chat/completions chunk or a Responses event), or None."""
    try:
        data = orjson.loads(encoded_event.split(b"data: ", 1)[1])
    except (IndexError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if usage is None and isinstance(data.get("response"), dict):
        usage = data["response"].get("usage")
    return usage
