"""The Files API (OpenAI's): upload streamed into storage, list, retrieve, download (streamed), delete.

Only the key that created a file (or the master key) sees it; to any other key it does not exist (404).
"""
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from deltallm.api.body import CLOSE_CONNECTION, READ_SIZE, BoundedInput
from deltallm.api.common import gateway, json_response, query_args
from deltallm.api.multipart import MAX_FIELD_BYTES, MAX_PARTS, MultipartReader
from deltallm.errors import GatewayError, InvalidRequest, NotFound, RequestTooLarge
from deltallm.jobs import files
from deltallm.models import File, epoch

bp = Blueprint("files", __name__)
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FORM_FIELDS = ("purpose", "expires_after[anchor]", "expires_after[seconds]")
# what the body may carry besides the file: its fields and the multipart framing
FORM_OVERHEAD = MAX_PARTS * (MAX_FIELD_BYTES + 1024)
# what is read and dropped of a refused upload so that its client gets the answer (see drop_the_rest)
DRAIN_CAP = 16 * 1024 * 1024
# an upload may take as long as a slow client needs at this rate (plus the usual body timeout)
MIN_UPLOAD_RATE = 512 * 1024
JSONL_PURPOSES = ("batch", "batch_output")


def owner():
    """The key whose files these are; None for the master key, which sees every file."""
    return g.principal.key_id


def file_object(file):
    return {"id": file.id, "object": "file", "bytes": file.bytes, "created_at": epoch(file.created_at),
            "expires_at": epoch(file.expires_at), "filename": file.filename, "purpose": file.purpose,
            "status": file.status, "status_details": None}


def found(file_id):
    # an id no file can have (PostgreSQL refuses NUL characters in a query) is simply not found
    ok = len(file_id) <= File.id.max_length and "\x00" not in file_id
    file = files.get_file(file_id, owner()) if ok else None
    if file is None:
        raise NotFound(f"No such File object: {file_id}", param="id")
    return file


@bp.post("/v1/files")
@bp.post("/files")
def upload():
    gw = gateway()
    upload_deadline(gw)
    files.sweep_now_and_then(gw.storage)
    begun = []  # the File row once the file part starts: removed again if anything fails after that
    try:
        fields, size = receive(gw, MultipartReader(request.environ, gw.max_file_bytes + FORM_OVERHEAD), begun)
        if not begun:
            raise InvalidRequest("Missing required parameter: 'file' (a multipart upload).", param="file")
        purpose = check_purpose(fields.get("purpose"))
        file = files.publish(begun[0], size=size, purpose=purpose, expires_after=expires_after(fields))
    except BaseException as exc:
        if begun:
            files.discard(gw.storage, begun[0])
        if isinstance(exc, (files.FileTooLarge, RequestEntityTooLarge)):
            drop_the_rest(gw)
            raise RequestTooLarge(f"The file is larger than this gateway accepts "
                                  f"(max_file_size_mb: {gw.settings.general['max_file_size_mb']:g}).",
                                  param="file") from None
        raise
    return json_response(file_object(file))


def drop_the_rest(gw):
    """Read and drop the rest of a refused upload, up to DRAIN_CAP bytes: a client still sending (as
    HTTP clients do before they read an answer) then gets the 413 instead of a reset connection. A body
    longer than that is left unread, and the connection closed after the answer."""
    environ = request.environ
    declared = request.content_length
    drained = 0
    if declared is None or declared <= gw.max_file_bytes + FORM_OVERHEAD + DRAIN_CAP:
        try:
            while drained <= DRAIN_CAP:
                data = environ["wsgi.input"].read(READ_SIZE)
                if not data:
                    return
                drained += len(data)
        except GatewayError:  # the body timed out or was malformed: nothing more to read anyway
            pass
    environ[CLOSE_CONNECTION] = True


def upload_deadline(gw):
    stream = request.environ.get("wsgi.input")
    if isinstance(stream, BoundedInput):
        length = request.content_length or gw.max_file_bytes
        stream.allow(stream.seconds + min(length, gw.max_file_bytes + FORM_OVERHEAD) / MIN_UPLOAD_RATE)


def receive(gw, reader, begun):
    """({field: value}, bytes): the form's fields, and its one file stored as it arrives (its row in `begun`)."""
    fields, size = {}, 0
    for part in reader.parts():
        if part.filename is None:
            if part.name not in FORM_FIELDS:
                raise InvalidRequest(f"Unrecognized request argument supplied: {part.name}", param=part.name)
            if part.name in fields:
                raise InvalidRequest(f"'{part.name}' may be given once", param=part.name)
            fields[part.name] = part.text()
            if part.name == "purpose":
                check_purpose(fields["purpose"])  # before any of the file is stored, when it comes first
        elif part.name != "file":
            raise InvalidRequest(f"Unrecognized file field: {part.name} (the upload is 'file')", param=part.name)
        elif begun:
            raise InvalidRequest("Only one 'file' may be uploaded per request.", param="file")
        else:
            if not part.filename or "\x00" in part.filename:
                raise InvalidRequest("The uploaded file has no usable file name.", param="file")
            if len(part.filename) > File.filename.max_length:
                raise InvalidRequest(f"The file name is longer than {File.filename.max_length} characters.",
                                     param="file")
            begun.append(files.begin_upload(gw.storage, owner=owner(), filename=part.filename,
                                            purpose=fields.get("purpose")))
            size = files.write_content(gw.storage, begun[0], part.chunks(), gw.max_file_bytes)
    return fields, size


def check_purpose(purpose):
    if not purpose:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"'{purpose}' is not one of {list(UPLOAD_PURPOSES)} - 'purpose'", param="purpose")
    return purpose


def expires_after(fields):
    """OpenAI's `expires_after` (anchor created_at, 3600..2592000 seconds) as seconds, or None."""
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequest("expires_after[anchor] must be 'created_at'", param="expires_after.anchor")
    if seconds is None or not seconds.isdigit() or not 3600 <= int(seconds) <= 2592000:
        raise InvalidRequest("expires_after[seconds] must be a whole number between 3600 and 2592000",
                             param="expires_after.seconds")
    return int(seconds)


@bp.get("/v1/files")
@bp.get("/files")
def list_files():
    args = query_args("purpose", "limit", "after", "order")
    limit = args["limit"] or "10000"
    if not limit.isdigit() or not 1 <= int(limit) <= 10000:
        raise InvalidRequest("limit must be an integer between 1 and 10000", param="limit")
    order = args["order"] or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    after = None
    if args["after"] is not None:
        after = files.get_file(args["after"], owner()) if len(args["after"]) <= File.id.max_length else None
        if after is None:
            raise NotFound(f"No such File object: {args['after']}", param="after")
    rows, has_more = files.list_files(owner(), purpose=args["purpose"], after=after, limit=int(limit), order=order)
    data = [file_object(row) for row in rows]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": has_more})


@bp.get("/v1/files/<file_id>")
@bp.get("/files/<file_id>")
def retrieve(file_id):
    return json_response(file_object(found(file_id)))


@bp.get("/v1/files/<file_id>/content")
@bp.get("/files/<file_id>/content")
def content(file_id):
    file = found(file_id)
    jsonl = file.purpose in JSONL_PURPOSES or file.filename.lower().endswith(".jsonl")
    # read from storage as the body is sent, after this view returns: read_chunks needs no request state
    return Response(files.read_chunks(gateway().storage, file), direct_passthrough=True,
                    content_type="application/jsonl" if jsonl else "application/octet-stream",
                    headers={"Content-Length": str(file.bytes)})


@bp.delete("/v1/files/<file_id>")
@bp.delete("/files/<file_id>")
def delete(file_id):
    file = found(file_id)
    files.delete_file(gateway().storage, file)
    return json_response({"id": file.id, "object": "file", "deleted": True})
