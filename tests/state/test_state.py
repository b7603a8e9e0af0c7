"""Router state: the in-process implementation and the Redis one agree (fake clock, real Redis)."""
import uuid

import pytest
from redis import Redis

from deltallm.state import LocalState, make_state
from deltallm.state.shared import SharedState
from tests.conftest import REDIS_URL


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def redis_prefix():
    """Keys of our own under a unique prefix, deleted afterwards."""
    redis = Redis.from_url(REDIS_URL)
    prefix = f"deltallm-test:{uuid.uuid4().hex[:8]}:"
    yield redis, prefix
    for key in redis.scan_iter(prefix + "*"):
        redis.delete(key)


@pytest.fixture(params=["local", "redis"])
def state(request, redis_prefix):
    clock = Clock()
    if request.param == "local":
        return LocalState(clock=clock)
    redis, prefix = redis_prefix
    return SharedState(redis, ids=["a", "b"], prefix=prefix, clock=clock, background=False)


def test_failures_past_allowed_fails_within_a_minute_cool(state):
    assert state.fail("a", allowed_fails=2, cooldown=30) is None
    state.clock.now += 59
    assert state.fail("a", allowed_fails=2, cooldown=30) is None
    until = state.fail("a", allowed_fails=2, cooldown=30)
    assert until == pytest.approx(state.clock.now + 30)
    assert state.stats(["a"])["a"].cooling_until == pytest.approx(until)


def test_recent_failures_are_reported(state):
    state.fail("a", allowed_fails=5, cooldown=30)
    state.fail("a", allowed_fails=5, cooldown=30)
    if hasattr(state, "sync"):
        state.sync()
    assert state.stats(["a"])["a"].failures == 2


def test_failures_older_than_a_minute_do_not_count(state):
    state.fail("a", allowed_fails=1, cooldown=30)
    state.clock.now += 61
    assert state.fail("a", allowed_fails=1, cooldown=30) is None


def test_cool_extends_but_never_shortens(state):
    first = state.cool("a", 60)
    assert state.cool("a", 10) == pytest.approx(first)
    assert state.cool("a", 120) == pytest.approx(state.clock.now + 120)


def test_cooling_clears_latency_so_a_returning_deployment_is_measured_again(state):
    state.begin("a")
    state.end("a", latency=0.5)
    assert state.stats(["a"])["a"].samples == 1
    state.cool("a", 5)
    assert state.stats(["a"])["a"].samples == 0


def test_in_flight_latency_and_usage(state):
    state.begin("a")
    state.begin("a")
    state.end("a", latency=1.0, tokens=10)
    stats = state.stats(["a", "b"])
    assert stats["a"].in_flight == 1 and stats["b"].in_flight == 0
    assert stats["a"].latency == pytest.approx(1.0) and stats["a"].requests == 2 and stats["a"].tokens == 10
    state.end("a", latency=2.0)
    assert 1.0 < state.stats(["a"])["a"].latency < 2.0
    state.clock.now += 60  # a new minute
    assert state.stats(["a"])["a"].requests == 0


def test_workers_share_cooldowns_in_flight_latency_and_usage(redis_prefix):
    redis, prefix = redis_prefix
    clock = Clock()
    one = SharedState(redis, ids=["a", "b"], prefix=prefix, clock=clock, background=False)
    two = SharedState(redis, ids=["a", "b"], prefix=prefix, clock=clock, background=False)
    one.begin("a")
    one.begin("a")
    one.end("a", latency=3.0, tokens=100)
    one.cool("b", 30)
    one.sync()
    two.sync()
    seen = two.stats(["a", "b"])
    assert seen["a"].in_flight == 1 and seen["a"].latency == pytest.approx(3.0)
    assert seen["a"].requests == 2 and seen["a"].tokens == 100
    assert seen["b"].cooling_until == pytest.approx(clock.now + 30)
    # usage sums over workers; in-flight counts go away when a worker's requests end
    two.begin("a")
    one.end("a")
    one.sync()
    two.sync()
    seen = two.stats(["a"])["a"]
    assert seen.requests == 3 and seen.in_flight == 1


def test_failures_from_several_workers_add_up(redis_prefix):
    redis, prefix = redis_prefix
    clock = Clock()
    one = SharedState(redis, ids=["a"], prefix=prefix, clock=clock, background=False)
    two = SharedState(redis, ids=["a"], prefix=prefix, clock=clock, background=False)
    assert one.fail("a", allowed_fails=1, cooldown=20) is None
    until = two.fail("a", allowed_fails=1, cooldown=20)
    assert until == pytest.approx(clock.now + 20)
    one.sync()
    assert one.stats(["a"])["a"].cooling_until == pytest.approx(until)


def test_redis_down_keeps_routing_on_local_state(caplog):
    state = make_state(Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=0.2, socket_connect_timeout=0.2),
                       ids=["a"], clock=Clock(), background=False)
    state.begin("a")
    state.sync()  # fails, keeps the deltas
    assert state.pending["a"][0] == 1
    assert state.fail("a", allowed_fails=0, cooldown=10) is not None  # local fallback still cools
    assert state.stats(["a"])["a"].requests == 1
    assert "Redis unavailable" in caplog.text


def test_the_background_trade_runs_and_ends_with_its_state(redis_prefix):
    import gc
    import time
    redis, prefix = redis_prefix
    one = SharedState(redis, ids=["a"], prefix=prefix, interval=0.01)
    two = SharedState(redis, ids=["a"], prefix=prefix, interval=0.01)
    one.begin("a")
    one.stats(["a"])
    two.stats(["a"])
    deadline = time.monotonic() + 5
    while two.stats(["a"])["a"].in_flight != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert two.stats(["a"])["a"].in_flight == 1
    thread = one.thread
    del one
    gc.collect()
    thread.join(2)
    assert not thread.is_alive()
