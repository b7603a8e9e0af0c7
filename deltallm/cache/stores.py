"""Where cached answers live: an LRU in this process bounded in bytes, or Redis with a short deadline.

Both hold opaque bytes under string keys and never raise: a failing or slow store is a miss, and
writing to Redis happens on a background thread (a greenlet under gevent) so no request waits for it."""
import collections
import logging
import queue
import threading
import time

logger = logging.getLogger(__name__)


class LocalStore:
    """Least recently used entries go first once the values' total size passes `max_bytes`."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.entries = collections.OrderedDict()   # key -> (expires at, value)
        self.size = 0
        self.lock = threading.Lock()

    def get_many(self, keys):
        now = time.monotonic()
        found = []
        with self.lock:
            for key in keys:
                entry = self.entries.get(key)
                if entry is not None and entry[0] <= now:
                    self._drop(key)
                    entry = None
                if entry is not None:
                    self.entries.move_to_end(key)
                found.append(entry[1] if entry is not None else None)
        return found

    def set(self, key, value, ttl):
        if len(value) > self.max_bytes:
            return
        with self.lock:
            if key in self.entries:
                self._drop(key)
            self.entries[key] = (time.monotonic() + ttl, value)
            self.size += len(value)
            while self.size > self.max_bytes:
                self._drop(next(iter(self.entries)))

    def _drop(self, key):
        self.size -= len(self.entries.pop(key)[1])

    def close(self):
        pass


class RedisStore:
    """Reads wait at most `timeout` seconds; after a failure Redis is left alone for `backoff` seconds
    (every lookup a miss at once), so a down Redis costs one timeout, not one per request."""

    PREFIX = "deltallm:cache:"

    def __init__(self, url, timeout, backoff=5.0, max_pending=1000):
        import redis  # noqa: PLC0415 - only a Redis cache needs the client
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415
        # no retries: redis-py's default retries a timeout three times with backoff (seconds, not ms)
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self.backoff = backoff
        self.down_until = 0.0
        self.pending = queue.Queue(maxsize=max_pending)   # writes not yet sent; full: new ones dropped
        self.writer = None

    def get_many(self, keys):
        if time.monotonic() < self.down_until:
            return [None] * len(keys)
        try:
            return self.client.mget([self.PREFIX + key for key in keys])
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a miss
            self._failed(exc)
            return [None] * len(keys)

    def set(self, key, value, ttl):
        if time.monotonic() < self.down_until:
            return
        if self.writer is None:
            self.writer = threading.Thread(target=self._write_loop, name="deltallm-cache-writer", daemon=True)
            self.writer.start()
        try:
            self.pending.put_nowait((self.PREFIX + key, value, max(1, int(ttl * 1000))))
        except queue.Full:
            pass  # Redis cannot keep up: this answer is simply not cached

    def _write_loop(self):
        while True:
            item = self.pending.get()
            if item is None:
                return
            if time.monotonic() < self.down_until:
                continue
            key, value, ttl_ms = item
            try:
                self.client.set(key, value, px=ttl_ms)
            except Exception as exc:  # noqa: BLE001 - a failed write only loses a cache entry
                self._failed(exc)

    def _failed(self, exc):
        if time.monotonic() >= self.down_until:
            logger.warning("response cache: Redis unavailable (%s); serving without the cache for %.0f s",
                           type(exc).__name__, self.backoff)
        self.down_until = time.monotonic() + self.backoff

    def close(self):
        if self.writer is not None:
            try:
                self.pending.put_nowait(None)
            except queue.Full:
                pass


def store_for(settings):
    """The configured store, or None when `general_settings.cache` is absent (the cache is off)."""
    conf = settings.general.get("cache")
    if not conf:
        return None
    if conf["type"] == "redis":
        return RedisStore(settings.redis_url, conf["timeout"])
    return LocalStore(int(conf["max_size_mb"] * 1024 * 1024))
