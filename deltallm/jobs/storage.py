"""File content storage backends: the database (bounded chunks, the default) and S3 (see storage_s3).

A backend stores, streams and deletes the content under a key (the file id); it never sees File rows.
`write` gets chunks of at most CHUNK_SIZE bytes and leaves nothing behind when it fails part way.
"""
import logging

from deltallm.db import connection
from deltallm.errors import ConfigError
from deltallm.models import FileChunk

logger = logging.getLogger(__name__)
CHUNK_SIZE = 1024 * 1024


class DatabaseStorage:
    """Content as FileChunk rows of CHUNK_SIZE bytes: works wherever the database is shared, no extra service.

    Each chunk is its own short transaction: a 200 MB upload must not hold SQLite's single writer lock
    (or a PostgreSQL transaction) for as long as the client takes to send it.
    """

    name = "database"

    def write(self, key, chunks):
        seq = 0
        try:
            for seq, data in enumerate(chunks):
                with connection():
                    FileChunk.insert(file_id=key, seq=seq, data=data).execute()
        except BaseException:
            self.delete(key)
            raise

    def read(self, key):
        # one chunk per query, each on a connection handed back at once: a slow reader holds no cursor
        seq = 0
        while True:
            with connection():
                row = (FileChunk.select(FileChunk.data)
                       .where((FileChunk.file_id == key) & (FileChunk.seq == seq)).first())
            if row is None:
                return
            yield bytes(row.data)  # psycopg2 gives a memoryview
            seq += 1

    def delete(self, key):
        with connection():
            FileChunk.delete().where(FileChunk.file_id == key).execute()


def make_storage(config):
    """The backend `general_settings.files_storage` names (validated by config_sections.FilesStorageSchema)."""
    config = dict(config or {"type": "database"})
    kind = config.pop("type")
    if kind == "database":
        return DatabaseStorage()
    if kind == "s3":
        from deltallm.config import installed
        if not installed("boto3"):
            raise ConfigError("general_settings.files_storage: the s3 backend needs boto3: "
                              "pip install 'deltallm[s3]'")
        from deltallm.jobs.storage_s3 import S3Storage
        return S3Storage(**config)
    raise ConfigError(f"general_settings.files_storage.type: unknown storage '{kind}'")
