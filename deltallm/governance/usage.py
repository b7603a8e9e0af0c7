"""The usage log writer: records queue in the worker and a background thread (a greenlet under
gevent) inserts them in batches; a slow or absent database never blocks or fails a request."""
import collections
import logging
import os
import sqlite3
import threading
import time
import uuid

from peewee import SqliteDatabase

from deltallm.db import database, for_background_writer
from deltallm.models import Usage, utcnow
from deltallm.providers.transport import cooperative

logger = logging.getLogger(__name__)

FIELDS = ("request_id", "created_at", "key_id", "model", "deployment", "endpoint", "status",
          "prompt_tokens", "completion_tokens", "total_tokens", "spend", "latency_ms", "stream", "batch_id",
          "cache_hit")


def make_record(*, key_id, model, deployment, endpoint, status, usage=None, spend=0.0, latency_ms=0,
                stream=False, request_id=None, created_at=None, batch_id=None, cache_hit=None):
    """One usage row (SPEC §8) from OpenAI-shaped `usage` (chat/embeddings or responses' names)."""
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
    completion = int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
    return {"request_id": request_id or uuid.uuid4().hex, "created_at": created_at or utcnow(),
            "key_id": key_id, "model": model, "deployment": deployment, "endpoint": endpoint,
            "status": int(status), "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(usage.get("total_tokens") or prompt + completion),
            "spend": float(spend or 0.0), "latency_ms": int(latency_ms or 0), "stream": bool(stream),
            "batch_id": batch_id, "cache_hit": cache_hit}


def insert_sqlite(path, sql, rows):
    """One batch into a SQLite file on a connection of this (pool) thread's own, opened and closed here."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        with conn:
            conn.executemany(sql, rows)
    finally:
        conn.close()


def insert_sql(db):
    """INSERT for the usage table with the database's placeholders."""
    param = db.obj.param if hasattr(db, "obj") else db.param
    return (f"INSERT INTO {Usage._meta.table_name} ({', '.join(FIELDS)}) "
            f"VALUES ({', '.join([param] * len(FIELDS))})")


class UsageWriter:
    """Per-worker buffer of usage rows. `record()` only appends; the flusher inserts up to `batch_size`
    rows per statement every `interval` seconds (sooner when a batch is full); a failed insert puts the
    rows back and is retried after `retry_interval`. Beyond `max_queue` new rows are dropped and counted
    (`dropped`). `close()` flushes what is left (call it on SIGTERM / worker exit)."""

    def __init__(self, max_queue=10_000, batch_size=500, interval=1.0, retry_interval=2.0, db=None):
        self.max_queue, self.batch_size = max_queue, batch_size
        self.interval, self.retry_interval = interval, retry_interval
        # the database bound now, not the process-wide proxy at flush time: rows always land where
        # their gateway writes (tests build many apps on many databases in one process)
        bound = db or getattr(database, "obj", None)
        self.db = for_background_writer(bound) if bound is not None else None
        self.queue = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.thread, self.fork_aware = None, False
        self.closed, self.in_flight = False, 0
        self.written = self.dropped = self.failures = 0
        self._dropped_logged = 0
        self.off_hub = cooperative()  # a gevent worker: SQLite inserts go to gevent's thread pool

    @property
    def pending(self):
        return len(self.queue)

    def record(self, row):
        """Queue one row (a make_record() dict); never blocks, never raises. False when dropped.
        After close() (a stream settling while the worker stops) the row is written at once."""
        if self.closed:
            self.queue.append(row)
            return self.drain(timeout=2.0)
        self._ensure_started()
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            if self.dropped - self._dropped_logged >= 1000 or self._dropped_logged == 0:
                self._dropped_logged = self.dropped
                logger.warning("usage queue full (%d rows): %d usage records dropped so far",
                               self.max_queue, self.dropped)
            return False
        self.queue.append(row)
        if len(self.queue) >= self.batch_size:
            self.wake.set()
        return True

    def _ensure_started(self):
        if self.thread is not None:
            return
        with self.lock:
            if self.thread is not None:
                return
            self.stopping = False
            self.thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
            self.thread.start()
            if not self.fork_aware:
                # a forked worker inherits this object but not its thread, nor the parent's rows
                self.fork_aware = True
                os.register_at_fork(after_in_child=self._forget_parent)

    def _forget_parent(self):
        self.thread = None
        self.queue.clear()

    def _run(self):
        while not self.stopping:
            self.wake.wait(self.interval)
            self.wake.clear()
            while self.queue and not self.stopping:
                if not self.flush_batch():
                    self.wake.wait(self.retry_interval)
                    break

    def flush_batch(self):
        """Insert one batch; True when written (or nothing to write), False when the database failed."""
        with self.lock:
            batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            if not batch:
                return True
            self.in_flight += len(batch)  # drain() waits for these: back in the queue or written
        try:
            return self._insert(batch)
        finally:
            with self.lock:
                self.in_flight -= len(batch)

    def _insert(self, batch):
        db = self.db or database
        rows = [tuple(row[f] for f in FIELDS) for row in batch]
        try:
            if self.off_hub and isinstance(db, SqliteDatabase):
                # sqlite3 blocks the thread it runs on; under gevent that is every request of the worker
                # (a second's records took milliseconds: the c=1 p99), so it runs in a real thread
                from gevent import get_hub
                get_hub().threadpool.apply(insert_sqlite, (db.database, insert_sql(db), rows))
            else:
                with db.connection_context():
                    with db.atomic():
                        # one prepared statement for the batch: Peewee's insert_many builds SQL per row
                        db.cursor().executemany(insert_sql(db), rows)
        except Exception as error:  # noqa: BLE001 - any database failure: keep the rows and retry
            with self.lock:
                self.queue.extendleft(reversed(batch))
            self.failures += 1
            logger.warning("usage records not written (%s: %s); %d waiting, retrying",
                           error.__class__.__name__, str(error).splitlines()[0][:200] if str(error) else "",
                           len(self.queue))
            return False
        self.written += len(batch)
        return True

    def drain(self, timeout=10.0):
        """Write everything queued now, retrying a failing database until `timeout`; True when empty."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:  # the flusher's batch: back or written
            threading.Event().wait(0.01)
        while self.queue:
            if not self.flush_batch():
                if time.monotonic() + self.retry_interval > deadline:
                    logger.error("usage writer: %d usage records could not be written before shutdown",
                                 len(self.queue))
                    return False
                threading.Event().wait(self.retry_interval)
        return True

    def close(self, timeout=10.0):
        """Stop the flusher and drain: the worker-exit hook."""
        self.stopping = self.closed = True
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(self.interval, 1.0) + 1.0)
        self.thread = None
        return self.drain(timeout)
