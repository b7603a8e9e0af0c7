"""Reading upstream bodies under a deadline and a size bound: whole bodies, raw streams, SSE and AWS frames."""
import socket
import time

from urllib3.exceptions import ProtocolError, ReadTimeoutError

from deltallm.errors import UpstreamError, UpstreamTimeout
from deltallm.providers.transport import DEFAULT_OPTIONS, arm

TIMEOUTS = (ReadTimeoutError, socket.timeout)
BROKEN = (ProtocolError, OSError, ValueError)  # urllib3/socket errors vary by version


def megabytes(limit):
    return f"{limit / 1048576:g} MB"


def read_body(resp, timer, limit=None, armed=True):
    """The whole body, read before `timer.deadline`; at most `limit` bytes (the rest is dropped).

    `armed=False` when a gevent timer already bounds the read (Provider.send)."""
    if not armed and limit is None:
        return read_whole(resp)  # a gevent timer bounds it: one read, the common case
    disarm = arm(resp, timer) if armed else None
    parts, size = [], 0
    try:
        for data in resp.raw.stream(65536, decode_content=True):
            parts.append(data)
            size += len(data)
            if limit is not None and size >= limit:
                resp.close()  # the connection cannot be reused with body left unread
                break
            if timer.deadline <= time.monotonic():
                raise socket.timeout("upstream deadline passed")
    except (*TIMEOUTS, *BROKEN) as exc:
        raise reading_failed(resp, exc) from None
    finally:
        if disarm is not None:
            disarm()
    body = b"".join(parts)
    resp._content, resp._content_consumed = body[:limit] if limit is not None else body, True
    return resp._content


def read_whole(resp):
    try:
        body = resp.raw.read(decode_content=True)
    except (*TIMEOUTS, *BROKEN) as exc:
        raise reading_failed(resp, exc) from None
    resp._content, resp._content_consumed = body, True
    return body


def reading_failed(resp, exc):
    """The error for a body read that timed out or broke (the connection is closed: not reusable)."""
    resp.close()
    if isinstance(exc, TIMEOUTS):
        return UpstreamTimeout("timed out reading the response")
    return UpstreamError(f"the connection broke while reading the response ({exc.__class__.__name__})")


def iter_bytes(resp, *, per_chunk=True):
    """Yield body bytes as they arrive (no read-ahead buffering), chunked or not.

    A stream's timer (set by Provider.send) bounds the wait for more: it restarts with each chunk
    when `per_chunk`, else the caller restarts it (iter_sse does so per complete event).
    """
    raw = resp.raw
    timer = getattr(resp, "timer", None)
    disarm = arm(resp, timer) if timer is not None else None
    try:
        if raw.chunked and raw.supports_chunked_reads():
            reads = raw.read_chunked(decode_content=True)
        else:
            reads = iter(lambda: raw.read1(65536), b"")
        for data in reads:
            if timer is not None and per_chunk:
                timer.deadline = time.monotonic() + timer.per_read
            yield data
    except TIMEOUTS:
        raise UpstreamTimeout(f"upstream stream sent nothing for {silence(timer)} (stream_timeout)") from None
    except BROKEN as exc:
        raise UpstreamError(f"upstream stream broke: {exc.__class__.__name__}") from None
    finally:
        if disarm is not None:
            disarm()
        resp.close()


def silence(timer):
    return f"{timer.per_read:g} s" if timer is not None else "too long"


def iter_sse(resp):
    """Yield (event, data) pairs of a server-sent-event stream as each event completes.

    Only newly arrived bytes are scanned for line ends, and one event may hold at most the gateway's
    max_stream_event_mb: a bigger one (or a line that never ends) fails this stream alone.
    """
    limit = getattr(resp, "max_event_bytes", DEFAULT_OPTIONS.max_event_bytes)
    timer = getattr(resp, "timer", None)
    buf = bytearray()
    event, data, size = None, [], 0
    for chunk in iter_bytes(resp, per_chunk=False):
        scan = len(buf)  # the bytes before this chunk hold no line end
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", scan)
            if nl < 0:
                break
            line = bytes(buf[start:nl]).rstrip(b"\r")
            start = scan = nl + 1
            if not line:
                if data:
                    yield event, b"\n".join(data)
                    if timer is not None:
                        timer.deadline = time.monotonic() + timer.per_read
                event, data, size = None, [], 0
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                size += len(line)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode(errors="replace")
            # comments (":") and id/retry fields are ignored
        if start:
            del buf[:start]
        if size + len(buf) > limit:
            resp.close()
            raise UpstreamError(f"upstream sent a stream event larger than {megabytes(limit)} "
                                "(general_settings.max_stream_event_mb)")
    if data:
        yield event, b"\n".join(data)


def iter_frames(resp):
    """Complete length-prefixed frames (AWS event stream: a 4-byte big-endian total length first),
    each bounded by max_stream_event_mb; the stream timer restarts with every frame."""
    limit = getattr(resp, "max_event_bytes", DEFAULT_OPTIONS.max_event_bytes)
    timer = getattr(resp, "timer", None)
    buf = bytearray()
    for chunk in iter_bytes(resp, per_chunk=False):
        buf += chunk
        start = 0
        while len(buf) - start >= 4:
            total = int.from_bytes(buf[start:start + 4], "big")
            if total > limit:
                resp.close()
                raise UpstreamError(f"upstream sent a stream frame larger than {megabytes(limit)} "
                                    "(general_settings.max_stream_event_mb)")
            if total < 16:  # prelude (12) + message CRC (4): anything shorter is corrupt
                resp.close()
                raise UpstreamError("upstream sent a malformed event stream frame")
            if len(buf) - start < total:
                break
            yield bytes(buf[start:start + total])
            start += total
            if timer is not None:
                timer.deadline = time.monotonic() + timer.per_read
        if start:
            del buf[:start]
    if buf:
        raise UpstreamError("upstream stream ended inside an event stream frame")
