"""Router state shared through Redis by every worker and instance, without Redis on the request path.

Each worker keeps its own LocalState (so choosing a deployment never waits on the network) and a
background loop trades it with Redis every `interval` seconds in one script call: the worker's
in-flight counts and latency averages (a per-worker hash that expires with the worker), its usage
deltas for this minute, and back come the other workers' in-flight counts and latencies, the group's
usage this minute and the cooldowns. Failures and cooldowns are written at once (the failure path is
rare), so another worker skips a cooling deployment within one interval. When Redis is slow or down,
routing carries on with local state and a warning is logged.
"""
import logging
import threading
import time
import uuid
import weakref

from deltallm.state.local import FAILURE_WINDOW, LocalState, Stats

logger = logging.getLogger(__name__)

SYNC = """
local p, me, now, ttl, minute, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
redis.call('ZADD', p .. 'workers', now, me)
redis.call('ZREMRANGEBYSCORE', p .. 'workers', '-inf', now - ttl)
local workers = redis.call('ZRANGE', p .. 'workers', 0, -1)
local mine = p .. 'w:' .. me
local out = {}
local i = 7
for d = 1, n do
  local id, own, dreq, dtok = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  i = i + 4
  redis.call('HSET', mine, id, own)
  local rk, tk = p .. 'req:' .. id .. ':' .. minute, p .. 'tok:' .. id .. ':' .. minute
  local req, tok
  if dreq > 0 then req = redis.call('INCRBY', rk, dreq); redis.call('EXPIRE', rk, 120)
  else req = tonumber(redis.call('GET', rk) or '0') end
  if dtok > 0 then tok = redis.call('INCRBY', tk, dtok); redis.call('EXPIRE', tk, 120)
  else tok = tonumber(redis.call('GET', tk) or '0') end
  local busy, wsum, wn = 0, 0, 0
  for _, w in ipairs(workers) do
    if w ~= me then
      local v = redis.call('HGET', p .. 'w:' .. w, id)
      if v then
        local f, e, s = string.match(v, '^(%d+)|([^|]*)|(%d+)$')
        if f then
          busy = busy + tonumber(f)
          if e ~= '' and tonumber(s) > 0 then wsum = wsum + tonumber(e) * tonumber(s); wn = wn + tonumber(s) end
        end
      end
    end
  end
  local cool = redis.call('GET', p .. 'cool:' .. id) or '0'
  local fails = redis.call('ZCOUNT', p .. 'fails:' .. id, now - 60, '+inf')
  out[d] = {tostring(busy), tostring(wsum), tostring(wn), tostring(req), tostring(tok), cool, tostring(fails)}
end
redis.call('EXPIRE', mine, ttl)
return out
"""

# Count a failure in the sliding minute; past allowed_fails, cool the deployment (never shortening).
FAIL = """
local p, id, now, window, allowed, cooldown, member = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local fk = p .. 'fails:' .. id
redis.call('ZADD', fk, now, member)
redis.call('ZREMRANGEBYSCORE', fk, '-inf', now - window)
redis.call('EXPIRE', fk, math.ceil(window))
if redis.call('ZCARD', fk) <= allowed then return false end
redis.call('DEL', fk)
local ck = p .. 'cool:' .. id
local untl = math.max(now + cooldown, tonumber(redis.call('GET', ck) or '0'))
redis.call('SET', ck, tostring(untl), 'PX', math.max(1, math.ceil((untl - now) * 1000)))
return tostring(untl)
"""

COOL = """
local ck, now, untl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
untl = math.max(untl, tonumber(redis.call('GET', ck) or '0'))
redis.call('SET', ck, tostring(untl), 'PX', math.max(1, math.ceil((untl - now) * 1000)))
redis.call('DEL', ARGV[4])
return tostring(untl)
"""


class SharedState(LocalState):
    def __init__(self, redis, ids=(), prefix="deltallm:router:", interval=0.1, clock=time.time, background=True):
        super().__init__(clock)
        self.redis = redis
        self.prefix = prefix
        self.interval = interval
        self.worker = uuid.uuid4().hex[:12]
        self.ids = list(ids)       # the deployments traded: every one routing has asked about
        self.pending = {}          # id -> [requests, tokens] not yet sent
        self.remote = {}           # id -> (minute, others' in-flight, latency sum, samples, requests, tokens, cool, failures)
        self.sync_script = redis.register_script(SYNC)
        self.fail_script = redis.register_script(FAIL)
        self.cool_script = redis.register_script(COOL)
        self.known = set(self.ids)
        self.thread = None if background else False
        self.warned_at = 0.0

    # -- reads: local memory plus what the last sync brought --------------------------------
    def stats(self, ids):
        if not self.known.issuperset(ids):
            self.ids = list(dict.fromkeys(self.ids + list(ids)))
            self.known = set(self.ids)
        self.start()
        out = super().stats(ids)
        minute = self.minute()
        for dep, mine in out.items():
            remote = self.remote.get(dep)
            if remote is None:
                continue
            r_minute, busy, wsum, wn, requests, tokens, cool, failures = remote
            mine.in_flight += busy
            if wn:
                own_sum = (mine.latency or 0.0) * mine.samples
                mine.samples += wn
                mine.latency = (own_sum + wsum) / mine.samples
            if r_minute == minute:
                pending = self.pending.get(dep, (0, 0))
                mine.requests = requests + pending[0]
                mine.tokens = tokens + pending[1]
            mine.cooling_until = max(mine.cooling_until, cool)
            mine.failures = max(mine.failures, failures)
        return out

    def _count(self, dep, requests=0, tokens=0):
        super()._count(dep, requests, tokens)
        pending = self.pending.setdefault(dep, [0, 0])
        pending[0] += requests
        pending[1] += tokens

    # -- failures and cooldowns are written through at once ----------------------------------
    def fail(self, dep, allowed_fails, cooldown):
        local = super().fail(dep, allowed_fails, cooldown)
        try:
            until = self.fail_script(args=[self.prefix, dep, self.clock(), FAILURE_WINDOW, allowed_fails,
                                           cooldown, uuid.uuid4().hex])
        except Exception as exc:  # noqa: BLE001 - Redis trouble must not fail the request
            self.redis_trouble(exc)
            return local
        if until is None:
            return local
        until = float(until)
        with self.lock:
            self._cool(dep, until)
        return until

    def cool(self, dep, seconds):
        until = super().cool(dep, seconds)
        try:
            self.cool_script(args=[f"{self.prefix}cool:{dep}", self.clock(), until, f"{self.prefix}fails:{dep}"])
        except Exception as exc:  # noqa: BLE001
            self.redis_trouble(exc)
        return until

    # -- the background trade -----------------------------------------------------------------
    def start(self):
        """Start the background trade (once per process: a forked worker starts its own)."""
        if self.thread is None:
            self.thread = threading.Thread(target=trade_forever, args=(weakref.ref(self), self.interval),
                                           name="deltallm-router-state", daemon=True)
            # the first request of a worker routes on what the others know already (cooldowns)
            self.sync()
            self.thread.start()

    def sync(self):
        """One trade with Redis; safe to call directly (tests do)."""
        ids = self.ids
        if not ids:
            return
        minute = self.minute()
        with self.lock:
            pending, self.pending = self.pending, {}
            args = [self.prefix, self.worker, self.clock(), max(5, int(self.interval * 50)), minute, len(ids)]
            for dep in ids:
                ewma, samples = self.latency.get(dep, (None, 0))
                own = f"{self.in_flight[dep]}|{'' if ewma is None else repr(ewma)}|{samples}"
                req, tok = pending.get(dep, (0, 0))
                args += [dep, own, req, tok]
        try:
            rows = self.sync_script(args=args)
        except Exception as exc:  # noqa: BLE001 - keep routing on local state
            with self.lock:  # the deltas are not lost: they go with the next trade
                for dep, (req, tok) in pending.items():
                    mine = self.pending.setdefault(dep, [0, 0])
                    mine[0] += req
                    mine[1] += tok
            self.redis_trouble(exc)
            return
        remote = {}
        for dep, row in zip(ids, rows):
            busy, wsum, wn, req, tok, cool, fails = (float(v) for v in row)
            remote[dep] = (minute, int(busy), wsum, int(wn), int(req), int(tok), cool, int(fails))
        self.remote = remote

    def redis_trouble(self, exc):
        now = time.monotonic()
        if now - self.warned_at > 30:
            self.warned_at = now
            logger.warning("router state: Redis unavailable (%s: %s); routing on this worker's own state",
                           exc.__class__.__name__, exc)


def trade_forever(ref, interval):
    """The loop holds only a weak reference, so a discarded state (a test's app) ends its loop."""
    tick = threading.Event()  # not time.sleep: tests that patch it must not make this a busy loop
    while True:
        state = ref()
        if state is None:
            return
        state.sync()
        del state
        tick.wait(interval)


__all__ = ["SharedState", "Stats"]
