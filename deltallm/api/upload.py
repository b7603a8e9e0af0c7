"""A transcription/translation form passed upstream as it arrives: only a bounded buffer is held.

The text fields before the file are read first (model, response_format ...). When they name the model,
the upstream body is a generator: those fields, then the file's bytes as they are received, then any
fields after it; requests sends it chunked and it can be sent once. When the model comes after the
file, the file is spooled (to disk past SPOOL_BYTES) until the form is complete; that body has a known
length and can be sent again to another deployment.
"""
import tempfile
import uuid

from werkzeug.exceptions import RequestEntityTooLarge

from deltallm.api.body import READ_SIZE
from deltallm.errors import InvalidRequest, RequestTooLarge, UpstreamError

SPOOL_BYTES = 1024 * 1024
MAX_FIELDS = 32


def quoted(value):
    """A name or filename inside a Content-Disposition header (WHATWG's escapes, as browsers send)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class Form:
    def __init__(self, reader, check_field):
        self.boundary = uuid.uuid4().hex
        self.parts = reader.parts()
        self.check_field = check_field  # (name, value) -> None, raising a 400 for a bad field
        self.fields, self.file, self.spool, self.started = [], None, None, False
        self.read_fields()
        if self.file is None:
            raise InvalidRequest("Missing required parameter: 'file' (a multipart upload).", param="file")
        if self.get("model") is None:
            self.spool_file()
            self.read_fields()
        if not self.get("model"):
            raise InvalidRequest("Missing required parameter: 'model'.", param="model")

    def get(self, name):
        return next((value for key, value in self.fields if key == name), None)

    def read_fields(self):
        """Text fields up to the file part (or the end)."""
        try:
            for part in self.parts:
                if part.filename is None:
                    self.add_field(part.name, part.text())
                    continue
                if part.name != "file" or self.file is not None:
                    raise InvalidRequest(f"Unexpected file field '{part.name}': the upload is one 'file'",
                                         param=part.name)
                if "\x00" in part.filename:
                    raise InvalidRequest("The uploaded file has no usable file name.", param="file")
                self.file = part
                return
        except RequestEntityTooLarge:
            raise too_large() from None

    def add_field(self, name, value):
        if len(self.fields) >= MAX_FIELDS:
            raise InvalidRequest("The form has too many fields.")
        self.check_field(name, value)
        self.fields.append((name, value))

    def spool_file(self):
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        try:
            for data in self.file.chunks():
                self.spool.write(data)
        except RequestEntityTooLarge:
            raise too_large() from None

    # -- the upstream body ----------------------------------------------------------------------
    def header(self, name, filename=None, content_type=None):
        head = f'--{self.boundary}\r\nContent-Disposition: form-data; name="{quoted(name)}"'
        if filename is not None:
            head += f'; filename="{quoted(filename)}"\r\nContent-Type: {content_type}'
        return (head + "\r\n\r\n").encode()

    def encoded_fields(self, fields, model):
        return b"".join(self.header(name) + (model if name == "model" else value).encode() + b"\r\n"
                        for name, value in fields)

    def file_header(self):
        return self.header("file", self.file.filename, self.file_type())

    def file_type(self):
        kind = self.file.content_type
        return kind if kind and "\r" not in kind and "\n" not in kind else "application/octet-stream"

    def content_type(self):
        return f"multipart/form-data; boundary={self.boundary}"

    def body(self, model):
        """(iterable of bytes, Content-Length or None) of the form with `model` as the upstream's model."""
        if self.spool is not None:
            head = self.encoded_fields(self.fields, model) + self.file_header()
            tail = b"\r\n" + f"--{self.boundary}--\r\n".encode()
            size = self.spool.seek(0, 2)
            return self.replay(head, tail), len(head) + size + len(tail)
        if self.started:
            raise UpstreamError("the upload was already sent to an upstream that failed; it cannot be sent again",
                                retryable=False)
        return self.stream(model), None

    def replay(self, head, tail):
        yield head
        self.spool.seek(0)
        while True:
            data = self.spool.read(READ_SIZE)
            if not data:
                break
            yield data
        yield tail

    def stream(self, model):
        self.started = True
        yield self.encoded_fields(self.fields, model) + self.file_header()
        try:
            yield from self.file.chunks()
            before = len(self.fields)
            self.read_fields()  # the fields after the file, checked as they come
        except RequestEntityTooLarge:
            raise too_large() from None
        yield b"\r\n" + self.encoded_fields(self.fields[before:], model) + f"--{self.boundary}--\r\n".encode()

    def close(self):
        if self.spool is not None:
            self.spool.close()


def too_large():
    return RequestTooLarge("The audio upload is larger than this gateway accepts (max_transcription_mb).",
                           param="file")
