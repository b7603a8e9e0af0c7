"""Files: rows plus streamed content in the configured storage backend; what the Files API and batches use.

An upload is a File row in status "uploaded" (invisible) while its content streams in, then "processed".
A process killed mid-upload leaves such a row behind: the sweep removes it (and its content) a day later,
together with files past their `expires_at`.
"""
import datetime
import logging
import secrets
import threading
import time

import orjson

from deltallm.db import connection
from deltallm.jobs.storage import CHUNK_SIZE, DatabaseStorage, make_storage
from deltallm.models import File, utcnow

logger = logging.getLogger(__name__)
# OpenAI: files for and from the Batch API expire after 30 days unless asked otherwise; others never
DEFAULT_EXPIRY = {"batch": 30 * 86400, "batch_output": 30 * 86400}
ABANDONED_AFTER = datetime.timedelta(days=1)
SWEEP_EVERY = 600.0  # seconds between sweeps in one process
SWEEP_BATCH = 100    # files deleted per sweep: an upload that triggers one is not held up for long

_storages = {}
_lock = threading.Lock()
_last_sweep = [0.0]


class FileTooLarge(Exception):
    """The content passed `max_bytes`; nothing of it was kept."""

    def __init__(self, max_bytes):
        super().__init__(f"The file is larger than {max_bytes} bytes.")
        self.max_bytes = max_bytes


def storage_for(settings):
    """The storage backend of `general_settings.files_storage`, one per configuration per process."""
    config = settings.general.get("files_storage") or {"type": "database"}
    cache_key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
    with _lock:
        if cache_key not in _storages:
            _storages[cache_key] = make_storage(config)
        return _storages[cache_key]


def backend(storage, file):
    """Where this file's content is: files written before a switch to S3 stay readable from the database."""
    if file.storage == storage.name:
        return storage
    if file.storage == DatabaseStorage.name:
        return DatabaseStorage()
    raise RuntimeError(f"file {file.id} is kept in '{file.storage}' storage, which is not configured now")


def new_file_id():
    return f"file-{secrets.token_hex(12)}"


def begin_upload(storage, *, owner, filename, purpose=None):
    """A File row for content about to be written; invisible to the API until `publish`."""
    with connection():
        return File.create(id=new_file_id(), owner=owner, purpose=purpose, filename=filename,
                           storage=storage.name, status="uploaded")


def write_content(storage, file, chunks, max_bytes=None):
    """Stream `chunks` (any sizes) into storage as CHUNK_SIZE pieces; returns the byte count.
    FileTooLarge once past `max_bytes`, with what was written removed."""
    counted = [0]

    def pieces():
        buffer = bytearray()
        for data in chunks:
            counted[0] += len(data)
            if max_bytes is not None and counted[0] > max_bytes:
                raise FileTooLarge(max_bytes)
            buffer += data
            while len(buffer) >= CHUNK_SIZE:
                yield bytes(buffer[:CHUNK_SIZE])
                del buffer[:CHUNK_SIZE]
        if buffer:
            yield bytes(buffer)
    storage.write(file.id, pieces())
    return counted[0]


def publish(file, *, size, purpose=None, expires_after=None):
    """Make an uploaded file visible: its size, purpose and expiry (seconds from creation, or the
    purpose's default)."""
    if purpose is not None:
        file.purpose = purpose
    expires_after = expires_after if expires_after is not None else DEFAULT_EXPIRY.get(file.purpose)
    file.bytes = size
    file.status = "processed"
    file.expires_at = file.created_at + datetime.timedelta(seconds=expires_after) if expires_after else None
    with connection():
        file.save()
    return file


def discard(storage, file):
    """Remove an upload that did not complete: its content and its row."""
    try:
        backend(storage, file).delete(file.id)
    finally:
        with connection():
            File.delete().where(File.id == file.id).execute()


def save_file(storage, *, owner, purpose, filename, chunks, max_bytes=None, expires_after=None):
    """Store a whole file from an iterable of bytes, streamed; returns the File row (FileTooLarge past
    `max_bytes`, nothing kept)."""
    sweep_now_and_then(storage)
    file = begin_upload(storage, owner=owner, filename=filename, purpose=purpose)
    try:
        size = write_content(storage, file, chunks, max_bytes)
    except BaseException:
        discard(storage, file)
        raise
    return publish(file, size=size, expires_after=expires_after)


def read_chunks(storage, file):
    """The content, streamed chunk by chunk (never the whole file at once)."""
    return backend(storage, file).read(file.id)


def iter_lines(storage, file, max_line_bytes):
    """(1-based line number, line bytes without its \\n or \\r\\n) for each line, streamed.

    A line longer than max_line_bytes is (n, None), and the rest of it is skipped unread into memory;
    a last line without a newline still counts; blank lines are yielded too.
    """
    number, buffer, skipping = 0, bytearray(), False
    for chunk in read_chunks(storage, file):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end == -1:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_line_bytes + 1:  # +1: a \r that may belong to the newline
                        number += 1
                        yield number, None
                        buffer.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
            else:
                buffer += chunk[start:end]
                number += 1
                yield number, line_of(buffer, max_line_bytes)
            buffer.clear()
            start = end + 1
    if buffer and not skipping:
        number += 1
        yield number, line_of(buffer, max_line_bytes)


def line_of(buffer, max_line_bytes):
    line = bytes(buffer[:-1] if buffer.endswith(b"\r") else buffer)
    return line if len(line) <= max_line_bytes else None


def visible(owner):
    """Files the API may show to `owner` (None: the master key, who sees every file)."""
    condition = (File.status == "processed") & (File.expires_at.is_null() | (File.expires_at > utcnow()))
    return condition if owner is None else condition & (File.owner == owner)


def get_file(file_id, owner):
    """The file if it exists, is complete and unexpired, and `owner` may see it; else None."""
    with connection():
        return File.get_or_none((File.id == file_id) & visible(owner))


def list_files(owner, *, purpose=None, after=None, limit=10000, order="desc"):
    """(a page of files, whether more follow), ordered by created_at then id; `after` a File row."""
    query = File.select().where(visible(owner))
    if purpose is not None:
        query = query.where(File.purpose == purpose)
    ascending = order == "asc"
    if after is not None:
        if ascending:
            query = query.where((File.created_at > after.created_at)
                                | ((File.created_at == after.created_at) & (File.id > after.id)))
        else:
            query = query.where((File.created_at < after.created_at)
                                | ((File.created_at == after.created_at) & (File.id < after.id)))
    keys = (File.created_at, File.id) if ascending else (File.created_at.desc(), File.id.desc())
    with connection():
        rows = list(query.order_by(*keys).limit(limit + 1))
    return rows[:limit], len(rows) > limit


def delete_file(storage, file):
    """Delete a file's content, then its row (a failure part way leaves the file listed, to retry)."""
    backend(storage, file).delete(file.id)
    with connection():
        File.delete().where(File.id == file.id).execute()


def sweep(storage, now=None):
    """Delete expired files and uploads abandoned for a day (their content too); returns how many."""
    now = now or utcnow()
    with connection():
        stale = list(File.select().where((File.expires_at <= now) | (
            (File.status == "uploaded") & (File.created_at < now - ABANDONED_AFTER))).limit(SWEEP_BATCH))
    for file in stale:
        try:
            delete_file(storage, file)
        except Exception:  # noqa: BLE001 - one unreachable file must not stop the sweep; retried next time
            logger.warning("could not delete expired file %s", file.id, exc_info=True)
    return len(stale)


def sweep_now_and_then(storage):
    """Run the sweep at most every SWEEP_EVERY seconds per process, from whoever writes files."""
    now = time.monotonic()
    with _lock:
        if now - _last_sweep[0] < SWEEP_EVERY:
            return
        _last_sweep[0] = now
    sweep(storage)
