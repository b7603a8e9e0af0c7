"""multipart/form-data read as a stream: small text fields in memory, a file part handed on as it arrives.

werkzeug's request.files spools a whole upload (to a temporary file) before the view sees any of it;
its sans-IO decoder, fed READ_SIZE pieces here, lets the view store an upload while it is received.
"""
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wsgi import get_input_stream

from deltallm.api.body import READ_SIZE
from deltallm.errors import InvalidRequest

MAX_FIELD_BYTES = 65536  # a text field (purpose ...) is a few bytes
MAX_PARTS = 64
# the decoder keeps at most one read plus a part's headers: bigger means a header that never ends
MAX_BUFFER = READ_SIZE + MAX_FIELD_BYTES


class Part:
    """One part: `name`, `filename` (None for a text field), `content_type` (None if not sent); its bytes
    come from `chunks()` or `text()`."""

    def __init__(self, reader, name, filename, content_type=None):
        self.reader, self.name, self.filename, self.content_type = reader, name, filename, content_type
        self.done = False

    def chunks(self):
        while not self.done:
            event = self.reader.next_event()
            if not isinstance(event, Data):
                raise InvalidRequest("The multipart body is malformed.")
            self.done = not event.more_data
            if event.data:
                yield event.data

    def text(self):
        value = bytearray()
        for data in self.chunks():
            value += data
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"The form field '{self.name}' is too long.", param=self.name)
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise InvalidRequest(f"The form field '{self.name}' is not UTF-8 text.", param=self.name) from None

    def skip(self):
        for _ in self.chunks():
            pass


class MultipartReader:
    """The parts of a multipart/form-data body, in order, read from the WSGI input within `limit` bytes."""

    def __init__(self, environ, limit):
        kind, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
        boundary = options.get("boundary")
        if kind != "multipart/form-data" or not boundary:
            raise InvalidRequest("This endpoint expects a multipart/form-data body (a `file` and its fields).")
        # a Content-Length over `limit` is refused before anything is read; a chunked body once it passes it
        self.stream = get_input_stream(environ, max_content_length=limit)
        self.decoder = MultipartDecoder(boundary.encode("latin-1"), MAX_BUFFER, max_parts=MAX_PARTS)
        self.ended = False

    def next_event(self):
        try:
            while True:
                event = self.decoder.next_event()
                if not isinstance(event, NeedData):
                    return event
                if self.ended:
                    raise InvalidRequest("The multipart body ended before its closing boundary.")
                data = self.stream.read(READ_SIZE)
                self.ended = not data
                self.decoder.receive_data(data or None)
        except RequestEntityTooLarge:
            raise
        except ValueError as exc:  # the decoder's word for a malformed body
            raise InvalidRequest(f"The multipart body is malformed: {exc}") from None

    def parts(self):
        part = None
        while True:
            if part is not None and not part.done:
                part.skip()
            event = self.next_event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, (Field, File)):
                if not event.name:
                    raise InvalidRequest("A multipart part has no name.")
                part = Part(self, event.name, event.filename if isinstance(event, File) else None,
                            event.headers.get("content-type"))
                yield part
