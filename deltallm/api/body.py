"""Request bodies read within a size and a time bound, whatever their transfer encoding."""
import sys
import time

from gunicorn.http.errors import ParseException

from deltallm.errors import InvalidRequest, RequestTooLarge

# Set in the WSGI environ when the connection cannot carry another request (see deltallm.server).
CLOSE_CONNECTION = "deltallm.close_connection"
READ_SIZE = 65536


def too_large():
    return RequestTooLarge("The request body is larger than this gateway accepts.")


def has_body(environ):
    length = environ.get("CONTENT_LENGTH")
    return bool(length and length != "0") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def read(environ, limit):
    """The whole body; 413 once it is known to be longer than `limit` bytes, however it is framed.

    A chunked body has no length up front: it is read in pieces and counted, so a body over the limit
    is refused instead of being cut at the limit and processed (werkzeug's max_content_length does that).
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        try:
            length = int(length)
        except ValueError:
            raise InvalidRequest("The Content-Length header is not a number.") from None
        if length > limit:
            raise too_large()
        return stream.read(length) if length else b""
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and a server that does not end the stream: nothing can be read safely
    parts, size = [], 0
    while size <= limit:
        part = stream.read(READ_SIZE)
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise too_large()
    return b"".join(parts)


_TIMEOUT = []


def gevent_timeout():
    """gevent's Timeout when the worker is monkey-patched (gunicorn's gevent worker), else None;
    decided on the first request (the worker patches itself before serving) and kept."""
    if not _TIMEOUT:
        monkey = sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("socket"):
            from gevent import Timeout
            _TIMEOUT.append(Timeout)
        else:
            return None  # not patched (yet): ask again next time
    return _TIMEOUT[0]


class BoundedInput:
    """wsgi.input that gives up at a deadline (408) and answers a malformed chunked body with a 400.

    The deadline bounds the whole body, not each read: a client dripping a byte a second cannot hold
    the connection. Either failure leaves the connection unusable, so it is marked to be closed.
    """

    def __init__(self, environ, seconds):
        self.environ = environ
        self.stream = environ["wsgi.input"]
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.timeout = gevent_timeout()

    def allow(self, seconds):
        """Give the whole body `seconds` from its start instead (an upload may take longer than JSON)."""
        self.deadline += seconds - self.seconds
        self.seconds = seconds

    def read(self, size=-1):
        return self.bounded(self.stream.read, size)

    def readline(self, size=-1):
        return self.bounded(self.stream.readline, size)

    def __iter__(self):
        return iter(self.readline, b"")

    def bounded(self, read, size):
        timer = None
        if self.timeout is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self.timed_out()
            timer = self.timeout.start_new(remaining)
        try:
            return read(size)
        except ParseException as exc:
            self.environ[CLOSE_CONNECTION] = True
            raise InvalidRequest(f"The request body is not valid HTTP/1.1 chunked encoding: {exc}",
                                 code="invalid_chunked_body") from None
        except BaseException as exc:
            if timer is not None and exc is timer:
                raise self.timed_out() from None
            raise
        finally:
            if timer is not None:
                timer.close()

    def timed_out(self):
        self.environ[CLOSE_CONNECTION] = True
        return InvalidRequest(f"The request body was not received within {self.seconds:g} seconds.",
                              status=408, code="request_timeout")
