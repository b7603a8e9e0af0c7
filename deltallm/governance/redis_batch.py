"""Group commit for Redis scripts: concurrent requests of a worker share one pipelined round trip.

A request that needs an answer (a limit check) joins the queue; if no round trip is in flight it
sends the queue itself at once (so a lone request waits no longer than a plain call), otherwise it
waits for the round trip in flight to finish and then goes out with everyone who queued meanwhile.
Fire-and-forget calls (settling a finished request) only queue: they ride along with the next
round trip, or a background flush sends them within `linger` seconds when the worker is idle. Under
load that makes the limiter one round trip per batch of requests instead of two per request.
"""
import collections
import logging
import os
import threading
import time
import weakref

from redis.exceptions import NoScriptError, ResponseError

from deltallm.providers.transport import cooperative

logger = logging.getLogger(__name__)
SETTLE_RETRY_S = 30


class Pending:
    __slots__ = ("sha", "script", "keys", "args", "done", "result", "error", "lead", "first_failure")

    def __init__(self, sha, script, keys, args, waited):
        self.sha, self.script, self.keys, self.args = sha, script, keys, args
        self.done = threading.Event() if waited else None
        self.result = self.error = None
        self.lead = False  # woken to send the next round trip, not because its reply came
        self.first_failure = None


class ScriptBatcher:
    def __init__(self, client, linger=0.02, max_batch=256, wait_limit=5.0):
        self.client = client
        self.linger, self.max_batch, self.wait_limit = linger, max_batch, wait_limit
        self.sent_at = 0.0
        self.queue = collections.deque()
        self.lock = threading.Lock()
        self.sending = False
        self.flusher = None
        self.shas = {}
        self.idle = []  # connections between round trips (more than one only if senders overlap)
        self.cooperative = cooperative()

    def sha(self, script):
        found = self.shas.get(script)
        if found is None:
            found = self.shas[script] = self.client.script_load(script)
        return found

    def call(self, script, keys, args):
        """Run a script and return its reply (raises what Redis raised, or TimeoutError when no reply
        came within `wait_limit`: the limiter then fails open or closed as configured)."""
        item = Pending(self.sha(script), script, keys, args, waited=True)
        with self.lock:
            self.queue.append(item)
            lead = not self.sending
            if lead:
                self.sending, self.sent_at = True, time.monotonic()
        try:
            if lead:
                self.gather()
                self._lead()
            while True:
                if not item.done.wait(self.wait_limit):
                    self._abandon(item)
                    raise TimeoutError("no reply from the rate limiter's Redis round trip")
                if not item.lead:
                    break
                item.lead = False  # handed the next round trip: send it (this item goes with it)
                item.done.clear()
                self._lead()
        except BaseException:
            if item.lead:  # handed the round trip but leaving (killed, timed out): pass it on
                item.lead = False
                self._hand_off()
            raise
        if item.error is not None:
            raise item.error
        return item.result

    def gather(self):
        """Before leading a round trip, let the requests this worker already has in hand reach the
        queue: under gevent, one yield to the other ready greenlets (at concurrency 1 there are none and
        it returns at once). Under load it makes a round trip carry several requests instead of one."""
        if self.cooperative:
            from gevent import sleep
            sleep(0)

    def _abandon(self, item):
        """A caller gives up waiting: forget its item, and a round trip that has been "in flight" far
        too long (its sender was killed) so the next caller sends again."""
        with self.lock:
            try:
                self.queue.remove(item)
            except ValueError:
                pass
            if self.sending and time.monotonic() - self.sent_at > self.wait_limit:
                self.sending = False

    def post(self, script, keys, args):
        """Run a script some time soon; its reply is not needed (failures are logged)."""
        with self.lock:
            self.queue.append(Pending(self.shas.get(script) or self.sha(script), script, keys, args, waited=False))
        self._ensure_flusher()

    def _lead(self):
        """Send one round trip with what is queued (the caller holds `sending`), then hand `sending`
        to the first caller still waiting, so no caller keeps sending for others while its own
        answer waits."""
        batch = []
        try:
            with self.lock:
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
                self.sent_at = time.monotonic()
            if batch:
                self._send(batch)
        finally:
            for item in batch:  # a sender killed mid-flight: its callers fail instead of waiting forever
                if item.done is not None and not item.done.is_set():
                    if item.result is None and item.error is None:
                        item.error = ConnectionError("the rate limiter's Redis round trip was interrupted")
                    item.done.set()
            self._hand_off()

    def _hand_off(self):
        with self.lock:
            waiting = next((item for item in self.queue if item.done is not None), None)
            if waiting is None:
                self.sending = False  # settles still queued go with the next caller or the idle flush
            else:
                waiting.lead = True
        if waiting is not None:
            waiting.done.set()

    def _send(self, batch):
        replies = self._round_trip([("EVALSHA", item.sha, len(item.keys), *item.keys, *item.args)
                                    for item in batch])
        for item, reply in zip(batch, replies):
            if isinstance(reply, NoScriptError):  # Redis restarted and forgot the script: load it again
                try:
                    self.shas.pop(item.script, None)
                    reply = self.client.evalsha(self.sha(item.script), len(item.keys), *item.keys, *item.args)
                except Exception as error:  # noqa: BLE001
                    reply = error
            if isinstance(reply, Exception):
                item.error = reply
                if item.done is None:
                    self._retry_later(item, reply)
            else:
                item.result = reply
            if item.done is not None:
                item.done.set()

    def _round_trip(self, commands):
        """Write the commands at once and read their replies, on a connection of our own: redis-py's
        pipeline (and its pool's bookkeeping) cost more CPU than the round trip it saves. A reply that
        is a Redis error is returned as that exception; a broken connection fails every command."""
        try:
            conn = self.idle.pop()
        except IndexError:
            pool = self.client.connection_pool
            conn = pool.connection_class(**pool.connection_kwargs)
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as error:
                    replies.append(error)
        except Exception as error:  # noqa: BLE001 - the connection failed: every command fails with it
            conn.disconnect()
            return [error] * len(commands)
        except BaseException:  # killed mid-flight: replies may be left unread on this connection
            conn.disconnect()
            raise
        self.idle.append(conn)
        return replies

    def _retry_later(self, item, error):
        """A settle that failed (a Redis blip) is sent again with later round trips for up to
        SETTLE_RETRY_S (settling is idempotent): otherwise its parallel lease would be held until it
        expires and its cost would miss the budget counter."""
        item.error = None
        item.first_failure = item.first_failure or time.monotonic()
        if time.monotonic() - item.first_failure > SETTLE_RETRY_S:
            logger.warning("rate limiter: a settle could not be sent for %d s (%s); its lease expires on its "
                           "own", SETTLE_RETRY_S, error.__class__.__name__)
            return
        with self.lock:
            self.queue.append(item)

    def _ensure_flusher(self):
        if self.flusher is not None:
            return
        with self.lock:
            if self.flusher is not None:
                return
            self.flusher = threading.Thread(target=flush_forever, args=(weakref.ref(self), self.linger),
                                            name="limiter-flush", daemon=True)
            self.flusher.start()
            # a forked worker inherits this object but not the thread: it starts its own
            os.register_at_fork(after_in_child=self._forget_flusher)

    def _forget_flusher(self):
        self.flusher, self.sending = None, False
        self.queue.clear()

    def flush_queued(self):
        """Send what is queued unless a round trip is in flight (which will take it along)."""
        with self.lock:
            if self.sending or not self.queue:
                return
            self.sending = True
        self._lead()

    def flush(self, timeout=5.0):
        """Send whatever is queued now and wait until it went (reads that must see the settles)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.queue and not self.sending:
                    return
                lead = not self.sending
                if lead:
                    self.sending = True
            if lead:
                self._lead()
            else:
                threading.Event().wait(0.001)


def flush_forever(ref, linger):
    """The idle flush; it holds the batcher weakly and ends with it. Waits on an Event rather than
    time.sleep, so nothing that patches time.sleep (tests) turns it into a busy loop."""
    tick = threading.Event()
    while True:
        tick.wait(linger)
        batcher = ref()
        if batcher is None:
            return
        batcher.flush_queued()
        del batcher
