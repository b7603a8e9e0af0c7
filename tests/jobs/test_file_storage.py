"""File storage through the interface the batches use: the database backend (SQLite and PostgreSQL) and the
S3 backend (against moto's server), streamed both ways, cleaned up after failures, owner-scoped, swept."""
import datetime
import math
import os

import boto3
import pytest

from deltallm import db, models
from deltallm.jobs import files
from deltallm.jobs.storage import CHUNK_SIZE, DatabaseStorage, make_storage
from deltallm.models import File, FileChunk


@pytest.fixture(params=["sqlite", "postgres", "s3"])
def storage(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else str(tmp_path / "files.db")
    db.init(url)
    models.migrate()
    with db.connection():  # the PostgreSQL database is shared by the whole run
        FileChunk.delete().execute()
        File.delete().execute()
    if request.param == "s3":
        return make_storage(request.getfixturevalue("s3_bucket"))
    return DatabaseStorage()


def pieces(data, size):
    return (data[i:i + size] for i in range(0, len(data), size))


def stored_content(storage, file_id):
    """What the backend holds for a file id, looked at directly: chunk rows, or the S3 object."""
    if storage.name == "s3":
        found = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.object_key(file_id))
        return [obj["Size"] for obj in found.get("Contents", [])]
    with db.connection():
        return [len(row.data) for row in FileChunk.select().where(FileChunk.file_id == file_id)]


def test_a_file_goes_in_and_comes_out_streamed_in_bounded_chunks(storage):
    content = os.urandom(9 * 1024 * 1024 + 12345)  # more than one S3 part, odd-sized pieces in
    file = files.save_file(storage, owner="key1", purpose="batch", filename="in.jsonl",
                           chunks=pieces(content, 70_001))
    assert (file.bytes, file.status, file.owner, file.purpose) == (len(content), "processed", "key1", "batch")
    assert file.id.startswith("file-")
    chunks = list(files.read_chunks(storage, files.get_file(file.id, "key1")))
    assert b"".join(chunks) == content
    assert max(map(len, chunks)) <= CHUNK_SIZE
    stored = stored_content(storage, file.id)
    if storage.name == "database":
        assert len(stored) == math.ceil(len(content) / CHUNK_SIZE) and max(stored) == CHUNK_SIZE
    else:
        assert stored == [len(content)]


def test_an_empty_file(storage):
    file = files.save_file(storage, owner=None, purpose="user_data", filename="empty", chunks=iter(()))
    assert file.bytes == 0 and b"".join(files.read_chunks(storage, file)) == b""


def test_too_large_leaves_nothing_behind(storage):
    with pytest.raises(files.FileTooLarge):
        files.save_file(storage, owner=None, purpose="batch", filename="big.jsonl",
                        chunks=pieces(b"x" * (9 * 1024 * 1024), 65536), max_bytes=9 * 1024 * 1024 - 1)
    with db.connection():
        assert File.select().count() == 0 and FileChunk.select().count() == 0
    if storage.name == "s3":
        listed = storage.client.list_objects_v2(Bucket=storage.bucket)
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        assert listed.get("KeyCount") == 0 and not uploads.get("Uploads")


def test_a_failing_source_leaves_nothing_behind(storage):
    def source():
        yield b"a" * (3 * 1024 * 1024)
        raise ConnectionError("client went away")
    with pytest.raises(ConnectionError):
        files.save_file(storage, owner=None, purpose="batch", filename="x", chunks=source())
    with db.connection():
        assert File.select().count() == 0 and FileChunk.select().count() == 0


def test_delete_removes_the_content(storage):
    file = files.save_file(storage, owner="k", purpose="batch", filename="x", chunks=[b"a" * 2_000_000])
    assert stored_content(storage, file.id)
    files.delete_file(storage, file)
    assert stored_content(storage, file.id) == []
    assert files.get_file(file.id, None) is None


def test_only_the_owner_or_the_master_key_sees_a_file(storage):
    mine = files.save_file(storage, owner="alice", purpose="batch", filename="a", chunks=[b"1"])
    masters = files.save_file(storage, owner=None, purpose="batch", filename="m", chunks=[b"2"])
    assert files.get_file(mine.id, "alice").id == mine.id
    assert files.get_file(mine.id, "bob") is None
    assert files.get_file(mine.id, None).id == mine.id          # the master key sees every file
    assert files.get_file(masters.id, "alice") is None
    assert [f.id for f in files.list_files("alice")[0]] == [mine.id]
    assert {f.id for f in files.list_files(None)[0]} == {mine.id, masters.id}


def test_an_upload_in_progress_is_invisible(storage):
    file = files.begin_upload(storage, owner="k", filename="x")
    assert files.get_file(file.id, "k") is None and files.list_files("k") == ([], False)
    files.publish(file, size=files.write_content(storage, file, [b"abc"]), purpose="user_data")
    assert files.get_file(file.id, "k").bytes == 3


def test_expiry_and_the_sweep(storage, monkeypatch):
    batch = files.save_file(storage, owner="k", purpose="batch", filename="in", chunks=[b"1"])
    output = files.save_file(storage, owner="k", purpose="batch_output", filename="out", chunks=[b"2"])
    kept = files.save_file(storage, owner="k", purpose="user_data", filename="keep", chunks=[b"3"])
    short = files.save_file(storage, owner="k", purpose="user_data", filename="hour", chunks=[b"4"],
                            expires_after=3600)
    abandoned = files.begin_upload(storage, owner="k", filename="half")
    files.write_content(storage, abandoned, [b"5"])
    month = datetime.timedelta(days=30)
    assert (batch.expires_at - batch.created_at, output.expires_at - output.created_at) == (month, month)
    assert kept.expires_at is None and short.expires_at - short.created_at == datetime.timedelta(hours=1)

    assert files.sweep(storage) == 0
    start = files.utcnow()

    def at(hours):
        monkeypatch.setattr(files, "utcnow", lambda: start + datetime.timedelta(hours=hours))
    at(2)
    assert files.get_file(short.id, "k") is None                   # expired: gone at once for the API
    assert files.sweep(storage) == 1                                # ... and its content by the sweep
    assert stored_content(storage, short.id) == [] and stored_content(storage, abandoned.id) != []
    at(25)                                                          # an upload abandoned for a day
    assert files.sweep(storage) == 1 and stored_content(storage, abandoned.id) == []
    at(30 * 24 + 1)
    assert files.sweep(storage) == 2
    assert [f.id for f in files.list_files("k")[0]] == [kept.id]


def test_pages_follow_created_at_then_id(storage):
    made = [files.save_file(storage, owner="k", purpose="batch" if i % 2 else "user_data", filename=str(i),
                            chunks=[b"x"]) for i in range(7)]
    with db.connection():  # the same second for several: the id breaks the tie
        File.update(created_at=made[0].created_at).where(File.id.in_([f.id for f in made[2:5]])).execute()
    everything, more = files.list_files("k", order="asc")
    assert not more and len(everything) == 7
    keys = [(f.created_at, f.id) for f in everything]
    assert keys == sorted(keys)
    seen, after = [], None
    while True:
        page, more = files.list_files("k", after=after, limit=3, order="asc")
        seen += page
        if not more:
            break
        after = page[-1]
    assert [f.id for f in seen] == [f.id for f in everything]
    newest_first = files.list_files("k", limit=2)[0]
    assert [f.id for f in newest_first] == [f.id for f in everything[::-1][:2]]
    assert {f.purpose for f in files.list_files("k", purpose="batch")[0]} == {"batch"}


def test_files_written_before_a_switch_to_s3_stay_readable(tmp_path, s3_bucket):
    db.init(str(tmp_path / "switch.db"))
    models.migrate()
    old = files.save_file(DatabaseStorage(), owner=None, purpose="batch", filename="x", chunks=[b"from the db"])
    s3 = make_storage(s3_bucket)
    assert b"".join(files.read_chunks(s3, old)) == b"from the db"
    files.delete_file(s3, old)
    assert stored_content(DatabaseStorage(), old.id) == []


def test_storage_for_caches_one_backend_per_configuration(s3_bucket):
    from deltallm import config
    settings = config.from_dict({"general_settings": {"files_storage": s3_bucket}})
    first = files.storage_for(settings)
    assert files.storage_for(config.from_dict({"general_settings": {"files_storage": s3_bucket}})) is first
    assert first.name == "s3" and first.prefix == "files/"
    assert files.storage_for(config.from_dict({})).name == "database"


def test_s3_credentials_come_from_the_config_not_the_environment(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    storage = make_storage(s3_bucket)
    creds = storage.client._request_signer._credentials
    assert creds.access_key == "testing"
    boto3.client("s3", **{k: s3_bucket[k] for k in ("endpoint_url", "region_name", "aws_access_key_id",
                                                     "aws_secret_access_key")}).head_bucket(Bucket=s3_bucket["bucket"])
