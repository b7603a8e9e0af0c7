"""Per-key rate limits, parallel leases and budgets: one check-and-reserve before the upstream call,
one settle after it, over Redis (shared by all workers) or in process."""
import datetime
import logging
import math
import os
import time
from typing import NamedTuple, Optional

from deltallm.errors import GatewayError, RateLimited
from deltallm.governance.durations import period
from deltallm.governance.limits_local import LocalBackend

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
EPOCH = datetime.datetime(1970, 1, 1)    # the anchor of a budget without one: its counter stays put
NANO = 1_000_000_000          # spend is counted in nano-USD integers: exact sums, atomic INCRBY
NO_DURATION_TTL_MS = 7 * 86400 * 1000   # an all-time spend counter is re-seeded from the usage log weekly
WARN_EVERY_S = 60
RETRY_REDIS_AFTER_S = 5     # after a Redis failure, requests skip it this long instead of each timing out


class BudgetExceeded(GatewayError):
    status, type, code = 429, "budget_exceeded", "budget_exceeded"


class LimiterUnavailable(GatewayError):
    """Redis is unreachable and rate_limit_fail_open is false: refuse rather than serve unlimited."""
    status, type, code = 503, "service_unavailable", "rate_limiter_unavailable"


class _SeedFailed(Exception):
    """The usage log could not be read to seed a period's spend counter."""


class _RedisSkipped(Exception):
    """Redis failed moments ago: go straight to the fail-open/closed path."""


class Policy(NamedTuple):
    """A key's limits, built once per key row (cache it beside the key); None = not limited."""
    key_id: str
    rpm: Optional[int] = None
    tpm: Optional[int] = None
    parallel: Optional[int] = None
    model_rpm: Optional[dict] = None
    model_tpm: Optional[dict] = None
    max_budget: Optional[float] = None
    budget_duration: Optional[str] = None
    budget_anchor: Optional[datetime.datetime] = None

    @classmethod
    def from_row(cls, row):
        return cls(row.id, row.rpm_limit, row.tpm_limit, row.max_parallel_requests,
                   row.model_rpm_limit or None, row.model_tpm_limit or None, row.max_budget,
                   row.budget_duration, row.budget_period_start or row.created_at)

    @property
    def limited(self):
        return any(v is not None for v in (self.rpm, self.tpm, self.parallel, self.model_rpm,
                                            self.model_tpm, self.max_budget))


def _limit(value):
    return -1 if value is None else int(value)


def reset_text(ms):
    """OpenAI's reset header style: `120ms`, `7s`, `1m0s`."""
    if ms < 1000:
        return f"{max(int(ms), 0)}ms"
    seconds = math.ceil(ms / 1000)
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def headers_from(result):
    """x-ratelimit-* headers from the script's reply (only for the limits that are set)."""
    _, _, _, hl, hr, hreset, tl, tr, treset = result[:9]
    headers = {}
    if int(hl) >= 0:
        headers.update({"x-ratelimit-limit-requests": str(hl),
                        "x-ratelimit-remaining-requests": str(max(int(hr), 0)),
                        "x-ratelimit-reset-requests": reset_text(int(hreset))})
    if int(tl) >= 0:
        headers.update({"x-ratelimit-limit-tokens": str(tl),
                        "x-ratelimit-remaining-tokens": str(max(int(tr), 0)),
                        "x-ratelimit-reset-tokens": reset_text(int(treset))})
    return headers


class Grant:
    """What acquire() reserved; finish() settles it once (later calls do nothing)."""

    def __init__(self, limiter, backend, keys, rid, held, cost_nano, flags, headers):
        self.limiter, self.backend, self.keys, self.rid = limiter, backend, keys, rid
        self.held, self.cost_nano, self.flags, self.headers = held, cost_nano, flags, headers
        self.done = False
        self.holds_slot = False

    def finish(self, tokens=None, cost=0.0):
        """Release the parallel lease and replace the reservations by the real total tokens and USD
        cost (tokens=None keeps the token reservation: the real count is unknown). Never raises."""
        if self.done:
            return
        self.done = True
        if self.backend is None:
            return
        actual = self.held if tokens is None else (int(tokens), int(tokens))
        args = [self.rid, self.held[0], self.held[1], actual[0], actual[1], self.cost_nano,
                int(round((cost or 0.0) * NANO)), *self.flags]
        try:
            # a parallel slot must be free by the time the client has its answer: that settle waits
            # for its (batched) round trip; the others ride along with the next one
            self.backend.finish(self.keys, args, wait=self.holds_slot)
        except Exception as error:  # noqa: BLE001 - settling must never fail the response
            self.limiter.warn("settle", f"could not settle rate limits ({error.__class__.__name__}); "
                              "leases expire on their own")

    def release(self):
        """Release without usage (an error before any upstream tokens): tokens and cost settle at 0."""
        self.finish(tokens=0, cost=0.0)


class Limiter:
    """Front of the limits: builds the script's arguments from a Policy and turns replies into
    grants, 429s and headers. `redis` None = in-process; `seed(key_id, start)` returns the USD spent
    since `start` from the usage log; `clock` returns unix seconds (tests pass a fake)."""

    def __init__(self, redis=None, *, prefix="deltallm:rl:", fail_open=True, lease_seconds=600,
                 seed=None, clock=time.time):
        from deltallm.governance.limits_redis import RedisBackend
        self.local = LocalBackend()
        self.primary = RedisBackend(redis) if redis is not None else self.local
        self.prefix, self.fail_open, self.lease_ms = prefix, fail_open, int(lease_seconds * 1000)
        self._key_names = {}
        self.seed_fn = seed or (lambda key_id, start: 0.0)
        self.clock = clock
        self._warned_at = {}      # topic -> monotonic time of its last warning
        self._redis_down_until = 0.0

    def warn(self, topic, message):
        """Log a limiter problem at most once per WARN_EVERY_S per `topic` (a Redis outage is one line a
        minute); topics are throttled apart so that, say, failed settles never hide the fallback."""
        now = time.monotonic()
        if now - self._warned_at.get(topic, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[topic] = now
            logger.warning(message)

    def _period(self, policy, now):
        anchor = policy.budget_anchor or EPOCH
        if not policy.budget_duration:  # one period that never ends: no clock arithmetic needed
            return anchor, None, None
        now_dt = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
        return period(anchor, policy.budget_duration, now_dt) + (now_dt,)

    def _keys(self, policy, model, start):
        """The Redis keys of a key's counters for `model` in the period from `start` (remembered: the
        same few combinations come back request after request)."""
        found = self._key_names.get((policy.key_id, model, start))
        if found is not None:
            return list(found)  # the caller may not change the remembered list
        base = f"{self.prefix}{{{policy.key_id}}}"
        stamp = int(start.replace(tzinfo=datetime.timezone.utc).timestamp())
        names = (f"{base}:req", f"{base}:tok", f"{base}:tokn", f"{base}:mreq:{model}", f"{base}:mtok:{model}",
                 f"{base}:mtokn:{model}", f"{base}:par", f"{base}:spend:{stamp}", f"{base}:bres",
                 f"{base}:bresn")
        if len(self._key_names) >= 4096:
            self._key_names.clear()
        self._key_names[(policy.key_id, model, start)] = names
        return list(names)

    def _seed(self, backend, policy, keys, start, end, now_ms):
        try:
            spent = self.seed_fn(policy.key_id, start)
        except Exception as error:  # noqa: BLE001 - the database, not Redis, failed
            raise _SeedFailed(error.__class__.__name__) from error
        ttl = NO_DURATION_TTL_MS if end is None else \
            int((end - start).total_seconds() * 1000) + 86_400_000
        backend.seed(keys[7], int(round(spent * NANO)), ttl, now_ms=now_ms)

    def acquire(self, policy, model, tokens=0, cost=0.0):
        """Check and reserve every limit of `policy` for one request to public model `model`, holding
        `tokens` (estimated prompt + max output) and `cost` USD. Returns a Grant (its `headers` go on
        the response); raises RateLimited / BudgetExceeded (with headers and Retry-After) or
        LimiterUnavailable."""
        if not policy.limited:
            return Grant(self, None, None, None, (0, 0), 0, ("0", "0", "0"), {})
        now = self.clock()
        now_ms = int(now * 1000)
        start, end, now_dt = self._period(policy, now)
        keys = self._keys(policy, model, start)
        mrpm = (policy.model_rpm or {}).get(model)
        mtpm = (policy.model_tpm or {}).get(model)
        budget = -1 if policy.max_budget is None else int(round(policy.max_budget * NANO))
        cost_nano = int(round(max(cost, 0.0) * NANO))
        reset_ms = int((end - now_dt).total_seconds() * 1000) if end else WINDOW_MS
        rid = os.urandom(8).hex()
        args = [now_ms, WINDOW_MS, rid, _limit(policy.rpm), _limit(policy.tpm), _limit(mrpm), _limit(mtpm),
                _limit(policy.parallel), max(int(tokens), 0), self.lease_ms, budget, cost_nano, reset_ms]
        backend = self.primary
        try:
            if backend is not self.local and time.monotonic() < self._redis_down_until:
                raise _RedisSkipped()
            result = self._run(backend, policy, keys, args, start, end, now_ms)
        except LimiterUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - any Redis failure: the fail-open/closed setting decides
            if backend is self.local:
                raise
            if not isinstance(error, _RedisSkipped):
                self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            if not self.fail_open:
                self.warn("closed", f"rate limiter unavailable ({error.__class__.__name__}): refusing requests "
                          "(rate_limit_fail_open is false)")
                raise LimiterUnavailable("rate limiter unavailable, retry shortly",
                                         headers={"Retry-After": "1"}) from error
            self.warn("open", f"rate limiter Redis unavailable ({error.__class__.__name__}): limits are "
                      "enforced per worker until it is back")
            backend = self.local
            result = self._run(backend, policy, keys, args, start, end, now_ms)
        headers = headers_from(result)
        if int(result[0]) != 1:
            self._refuse(policy, result, headers, keys, backend, now_ms)
        flags = ("1" if policy.tpm is not None else "0", "1" if mtpm is not None else "0",
                 "1" if args[10] >= 0 else "0")
        grant = Grant(self, backend, keys, rid, (int(result[9]), int(result[10])), cost_nano, flags, headers)
        grant.holds_slot = policy.parallel is not None
        return grant

    def _run(self, backend, policy, keys, args, start, end, now_ms):
        result = backend.acquire(keys, args)
        if int(result[0]) == 2:       # no spend counter for this period yet: seed it, then again
            try:
                self._seed(backend, policy, keys, start, end, now_ms)
            except _SeedFailed as error:
                if not self.fail_open:
                    raise LimiterUnavailable("spend unavailable, retry shortly",
                                             headers={"Retry-After": "1"}) from error
                self.warn("seed", f"usage log unavailable ({error}): budgets are not checked until it is back")
                args[10], args[11] = -1, 0      # this request goes without the budget check
            result = backend.acquire(keys, args)
        return result

    def _refuse(self, policy, result, headers, keys, backend, now_ms):
        reason = result[1].decode() if isinstance(result[1], bytes) else result[1]
        headers["Retry-After"] = str(max(1, math.ceil(int(result[2]) / 1000)))
        if reason == "budget":
            spent = (backend.spend(keys[7], now_ms=now_ms) or 0) / NANO
            raise BudgetExceeded(f"budget exceeded: this key spent ${spent:.6f} of its "
                                 f"${policy.max_budget} budget", headers=headers)
        if reason == "parallel":
            raise RateLimited(f"too many parallel requests: this key allows {policy.parallel}",
                              headers=headers)
        raise RateLimited(f"rate limit exceeded ({reason} per minute) for this key", headers=headers)

    def spend(self, policy):
        """`(spent USD in the current period, period end or None)` for key reads; seeds when missing."""
        now = self.clock()
        start, end, _ = self._period(policy, now)
        keys = self._keys(policy, "", start)
        for backend in (self.primary, self.local):
            try:
                value = backend.spend(keys[7], now_ms=int(now * 1000))
                if value is None:
                    self._seed(backend, policy, keys, start, end, int(now * 1000))
                    value = backend.spend(keys[7], now_ms=int(now * 1000)) or 0
                return value / NANO, end
            except _SeedFailed:
                raise
            except Exception as error:  # noqa: BLE001
                self.warn("spend", f"could not read spend from Redis ({error.__class__.__name__})")
        return self.seed_fn(policy.key_id, start), end
