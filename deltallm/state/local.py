"""Router state kept in process memory: cooldowns, failures, in-flight counts, latency, usage per minute."""
import collections
import math
import threading
import time

# How much a new latency sample moves a deployment's average (exponentially weighted).
LATENCY_ALPHA = 0.3
FAILURE_WINDOW = 60.0


class Stats:
    """What a routing strategy may know about one deployment right now."""

    __slots__ = ("cooling_until", "in_flight", "latency", "samples", "requests", "tokens", "failures")

    def __init__(self, cooling_until=0.0, in_flight=0, latency=None, samples=0, requests=0, tokens=0,
                 failures=0):
        self.cooling_until = cooling_until
        self.in_flight = in_flight
        self.latency = latency        # seconds (EWMA), None when unmeasured
        self.samples = samples
        self.requests = requests      # this minute
        self.tokens = tokens          # this minute
        self.failures = failures      # in the last minute

    def __repr__(self):
        return (f"Stats(cooling_until={self.cooling_until}, in_flight={self.in_flight}, "
                f"latency={self.latency}, requests={self.requests}, tokens={self.tokens})")


class LocalState:
    """Per-process router state; SharedState adds Redis on top of the same bookkeeping."""

    def __init__(self, clock=time.time):
        self.clock = clock
        # re-entrant: a dropped stream ends its attempt from the garbage collector, which may run while
        # this same thread (greenlet) holds the lock
        self.lock = threading.RLock()
        self.in_flight = collections.Counter()
        self.latency = {}                        # id -> (ewma seconds, samples)
        self.cooling = {}                        # id -> until (epoch seconds)
        self.failures = collections.defaultdict(collections.deque)
        self.usage = {}                          # id -> [minute, requests, tokens]

    def minute(self):
        return int(self.clock() // 60)

    # -- reads ----------------------------------------------------------------------------
    def stats(self, ids):
        """{id: Stats} for a group's deployments (local memory only: never waits on I/O)."""
        minute = self.minute()
        out = {}
        for dep in ids:
            ewma, samples = self.latency.get(dep, (None, 0))
            used = self.usage.get(dep)
            requests, tokens = (used[1], used[2]) if used and used[0] == minute else (0, 0)
            out[dep] = Stats(self.cooling.get(dep, 0.0), self.in_flight[dep], ewma, samples, requests, tokens,
                             self.failure_count(dep) if dep in self.failures else 0)
        return out

    # -- bookkeeping around one upstream attempt ------------------------------------------
    def begin(self, dep):
        with self.lock:
            self.in_flight[dep] += 1
            self._count(dep, requests=1)

    def end(self, dep, latency=None, tokens=0):
        """The attempt finished (any outcome); `latency` in seconds when it is a useful sample."""
        with self.lock:
            if self.in_flight[dep] > 0:
                self.in_flight[dep] -= 1
            if tokens:
                self._count(dep, tokens=tokens)
            if latency is not None:
                self._sample(dep, latency)

    def observe(self, dep, latency):
        """A latency sample from outside a request (a health check)."""
        with self.lock:
            self._sample(dep, latency)

    def add_tokens(self, dep, tokens):
        with self.lock:
            self._count(dep, tokens=tokens)

    def _count(self, dep, requests=0, tokens=0):
        minute = self.minute()
        used = self.usage.get(dep)
        if used is None or used[0] != minute:
            self.usage[dep] = used = [minute, 0, 0]
        used[1] += requests
        used[2] += tokens

    def _sample(self, dep, latency):
        ewma, samples = self.latency.get(dep, (None, 0))
        ewma = latency if ewma is None else ewma + LATENCY_ALPHA * (latency - ewma)
        self.latency[dep] = (ewma, samples + 1)

    # -- failures and cooldowns -----------------------------------------------------------
    def fail(self, dep, allowed_fails, cooldown):
        """Count a failure; cool the deployment when the last minute holds more than allowed_fails.
        Returns the time it cools until, or None."""
        now = self.clock()
        with self.lock:
            window = self.failures[dep]
            window.append(now)
            while window and window[0] <= now - FAILURE_WINDOW:
                window.popleft()
            if len(window) > allowed_fails:
                return self._cool(dep, now + cooldown)
        return None

    def cool(self, dep, seconds):
        """Cool a deployment at once for `seconds` (extends, never shortens, a running cooldown)."""
        with self.lock:
            return self._cool(dep, self.clock() + seconds)

    def _cool(self, dep, until):
        until = max(until, self.cooling.get(dep, 0.0))
        self.cooling[dep] = until
        self.failures.pop(dep, None)
        # a deployment that comes back is unmeasured again, so latency routing tries it first
        self.latency.pop(dep, None)
        return until

    def failure_count(self, dep):
        now = self.clock()
        return sum(1 for t in self.failures.get(dep, ()) if t > now - FAILURE_WINDOW)


def retry_after_seconds(until, now):
    """Whole seconds until `until`, rounded up, at least 1 (SPEC: Retry-After is whole seconds)."""
    return max(1, math.ceil(until - now))
