"""The limiter: sliding-window rpm/tpm, per-model maps, parallel leases, budgets; Redis and in process."""
import concurrent.futures
import datetime
import logging

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from deltallm.governance import limits as limits_module

from deltallm.errors import RateLimited
from deltallm.governance.limits import (BudgetExceeded, Limiter, LimiterUnavailable, Policy, reset_text)


@pytest.fixture(params=["local", "redis"])
def make(request, clock, redis_client, prefix):
    def build(**options):
        client = redis_client if request.param == "redis" else None
        return Limiter(client, prefix=prefix, clock=clock, **options)
    return build


def refused(limiter, policy, model="m", **kw):
    with pytest.raises(RateLimited) as info:
        limiter.acquire(policy, model, **kw)
    return info.value


def test_rpm_counts_the_current_request_and_refuses_with_retry_after(make, clock):
    limiter, policy = make(), Policy("k1", rpm=3)
    grants = []
    for expected in (2, 1, 0):
        grant = limiter.acquire(policy, "m")
        assert grant.headers["x-ratelimit-limit-requests"] == "3"
        assert grant.headers["x-ratelimit-remaining-requests"] == str(expected)
        grants.append(grant)
        clock.advance(10)
    error = refused(limiter, policy)
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    # the first request (t=0) leaves the window at t=60; now is t=30
    assert error.headers["Retry-After"] == "30"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in error.headers
    clock.advance(30.5)
    assert limiter.acquire(policy, "m").headers["x-ratelimit-remaining-requests"] == "0"


def test_sliding_window_does_not_let_twice_the_limit_through_at_a_boundary(make, clock):
    limiter, policy = make(), Policy("k2", rpm=10)
    clock.advance(59)               # late in a "minute"
    for _ in range(10):
        limiter.acquire(policy, "m")
    clock.advance(2)                # a fixed window would have reset here
    refused(limiter, policy)
    clock.advance(58.5)             # 60.5 s after the burst: all ten have left the window
    for _ in range(10):
        limiter.acquire(policy, "m")
    refused(limiter, policy)


def test_tokens_are_reserved_then_settled_with_the_real_usage(make, clock):
    limiter, policy = make(), Policy("k3", tpm=1000)
    first = limiter.acquire(policy, "m", tokens=600)
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    assert first.headers["x-ratelimit-remaining-tokens"] == "400"
    error = refused(limiter, policy, tokens=600)
    assert error.headers["Retry-After"] == "60"
    first.finish(tokens=150)        # the real usage replaces the reservation
    second = limiter.acquire(policy, "m", tokens=600)
    assert second.headers["x-ratelimit-remaining-tokens"] == "250"
    second.finish(tokens=None)      # unknown usage keeps the reservation
    refused(limiter, policy, tokens=300)
    clock.advance(61)
    assert limiter.acquire(policy, "m", tokens=300).headers["x-ratelimit-remaining-tokens"] == "700"


def test_a_reservation_larger_than_the_tpm_passes_only_into_an_empty_window(make, clock):
    limiter, policy = make(), Policy("k4", tpm=100)
    grant = limiter.acquire(policy, "m", tokens=5000)       # max_tokens larger than the whole limit
    assert grant.headers["x-ratelimit-remaining-tokens"] == "0"
    refused(limiter, policy, tokens=1)
    grant.finish(tokens=40)
    limiter.acquire(policy, "m", tokens=60)


def test_model_maps_limit_one_model_only_and_headers_show_the_tighter_limit(make):
    limiter = make()
    policy = Policy("k5", rpm=100, model_rpm={"a": 2}, model_tpm={"a": 50})
    assert limiter.acquire(policy, "a", tokens=10).headers["x-ratelimit-remaining-requests"] == "1"
    limiter.acquire(policy, "a", tokens=10)
    refused(limiter, policy, model="a")
    grant = limiter.acquire(policy, "b", tokens=10)
    assert grant.headers["x-ratelimit-remaining-requests"] == "97"
    assert "x-ratelimit-limit-tokens" not in grant.headers


def test_parallel_leases_are_released_once_and_expire_on_their_own(make, clock):
    limiter, policy = make(lease_seconds=30), Policy("k6", parallel=2)
    one, two = limiter.acquire(policy, "m"), limiter.acquire(policy, "m")
    error = refused(limiter, policy)
    assert "parallel" in error.message and error.headers["Retry-After"] == "1"
    one.release()
    one.release()                   # idempotent: does not free a second slot
    three = limiter.acquire(policy, "m")
    refused(limiter, policy)
    clock.advance(31)               # a killed worker never released `two` and `three`
    limiter.acquire(policy, "m")
    limiter.acquire(policy, "m")
    two.release(), three.release()


def test_budget_refuses_once_spent_and_counts_requests_in_flight(make, clock):
    seeds = []

    def seed(key_id, start):
        seeds.append(start)
        return 0.9 if len(seeds) == 1 else 0.0
    limiter = make(seed=seed)
    anchor = datetime.datetime.fromtimestamp(clock.now, datetime.timezone.utc).replace(tzinfo=None)
    policy = Policy("k7", max_budget=1.0, budget_duration="1h", budget_anchor=anchor)
    first = limiter.acquire(policy, "m", cost=0.05)
    limiter.acquire(policy, "m", cost=0.05).finish(cost=0.0)
    second = limiter.acquire(policy, "m", cost=0.05)     # 0.9 spent + 0.05 held + 0.05 held = 1.0
    with pytest.raises(BudgetExceeded) as info:
        limiter.acquire(policy, "m", cost=0.01)
    assert info.value.status == 429 and info.value.type == "budget_exceeded"
    assert info.value.code == "budget_exceeded" and info.value.headers["Retry-After"] == "3600"
    first.finish(cost=0.02)
    second.finish(cost=0.02)
    assert limiter.spend(policy)[0] == pytest.approx(0.94)
    limiter.acquire(policy, "m", cost=0.05).finish(cost=0.2)
    with pytest.raises(BudgetExceeded):
        limiter.acquire(policy, "m")
    clock.advance(3600)             # the next period starts: seeded again from the usage log
    limiter.acquire(policy, "m", cost=0.05)
    assert seeds == [anchor, anchor + datetime.timedelta(hours=1)]
    spent, reset_at = limiter.spend(policy)
    assert spent == 0.0 and reset_at == anchor + datetime.timedelta(hours=2)


def test_an_unlimited_key_costs_nothing_and_sends_no_headers(make):
    grant = make().acquire(Policy("k8"), "m", tokens=100)
    assert grant.headers == {}
    grant.finish(tokens=5, cost=1.0)


def test_exactly_the_limit_passes_under_concurrency_with_redis(redis_client, prefix):
    limiter, policy = Limiter(redis_client, prefix=prefix), Policy("k9", rpm=10, tpm=10_000, parallel=50)

    def call(_):
        try:
            limiter.acquire(policy, "m", tokens=10)
            return True
        except RateLimited:
            return False
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(50)))
    assert results.count(True) == 10
    ttl = redis_client.pttl(f"{prefix}{{k9}}:req")
    assert 0 < ttl <= 61_000        # idle keys disappear on their own


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_down_fails_open_to_per_worker_limits_or_closed(fail_open, clock, caplog):
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2,
                           retry=Retry(NoBackoff(), 0))
    limiter, policy = Limiter(dead, fail_open=fail_open, clock=clock), Policy("k10", rpm=2)
    calls = []
    real = limiter.primary.acquire
    limiter.primary.acquire = lambda *a: calls.append(1) or real(*a)
    caplog.set_level(logging.WARNING, logger="deltallm.governance.limits")
    if not fail_open:
        with pytest.raises(LimiterUnavailable) as info:
            limiter.acquire(policy, "m")
        assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
        with pytest.raises(LimiterUnavailable):
            limiter.acquire(policy, "m")
        assert len(calls) == 1      # the second request did not wait on Redis again
        return
    limiter.acquire(policy, "m").finish(tokens=3)
    limiter.acquire(policy, "m")
    refused(limiter, policy)        # still limited, within this worker
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1       # once per interval, not per request
    assert len(calls) == 1          # Redis is retried only after RETRY_REDIS_AFTER_S
    limits_module.RETRY_REDIS_AFTER_S = 0
    try:
        limiter._redis_down_until = 0
        refused(limiter, policy)
        assert len(calls) == 2
    finally:
        limits_module.RETRY_REDIS_AFTER_S = 5


@pytest.mark.parametrize("fail_open", [True, False])
def test_the_fallback_is_logged_even_after_a_failed_settle(fail_open, redis_client, prefix, caplog):
    """Requests in flight when Redis dies fail to settle first; that warning must not swallow the one
    saying the limiter fell back (or refuses), which is throttled separately."""
    limiter, policy = Limiter(redis_client, prefix=prefix, fail_open=fail_open), Policy("k13", rpm=5)
    grant = limiter.acquire(policy, "m")
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2,
                           retry=Retry(NoBackoff(), 0))
    limiter.primary = grant.backend = type(limiter.primary)(dead)      # Redis goes away mid-request
    caplog.set_level(logging.WARNING, logger="deltallm.governance.limits")
    grant.finish(tokens=3)
    if fail_open:
        limiter.acquire(policy, "m")
    else:
        with pytest.raises(LimiterUnavailable):
            limiter.acquire(policy, "m")
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not settle" in m for m in messages)
    expected = "limits are enforced per worker" if fail_open else "refusing requests"
    assert any(expected in m for m in messages), messages


def test_retry_after_never_exceeds_the_window_when_callers_clocks_disagree(make, clock):
    """Workers and instances each read their own clock before the script runs: an entry stamped by a
    caller slightly ahead must not make another's Retry-After or reset longer than the window."""
    limiter, policy = make(), Policy("k14", rpm=1, tpm=10)
    clock.advance(0.7)
    limiter.acquire(policy, "m", tokens=10)       # a caller whose clock runs 0.7 s ahead
    clock.advance(-0.7)
    error = refused(limiter, policy, tokens=5)
    assert error.headers["Retry-After"] == "60"
    assert error.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert error.headers["x-ratelimit-reset-tokens"] == "1m0s"


def test_reset_header_format():
    assert [reset_text(ms) for ms in (0, 120, 1000, 1001, 59_000, 60_000, 361_000)] == \
        ["0ms", "120ms", "1s", "2s", "59s", "1m0s", "6m1s"]


@pytest.mark.parametrize("fail_open", [True, False])
def test_usage_log_down_when_seeding_a_budget(fail_open, clock, caplog):
    def broken(key_id, start):
        raise OSError("database unavailable")
    limiter = Limiter(None, seed=broken, clock=clock, fail_open=fail_open)
    policy = Policy("k11", rpm=5, max_budget=1.0)
    if not fail_open:
        with pytest.raises(LimiterUnavailable):
            limiter.acquire(policy, "m")
        return
    grant = limiter.acquire(policy, "m", cost=0.5)      # served, without the budget check
    assert grant.headers["x-ratelimit-remaining-requests"] == "4" and grant.flags[2] == "0"
    grant.finish(cost=0.5)
    assert "budgets are not checked" in caplog.text


def test_the_in_process_backend_forgets_counters_of_periods_that_are_over(clock):
    limiter = Limiter(None, clock=clock)
    policy = Policy("k12", max_budget=5.0, budget_duration="30s")
    for _ in range(5):
        limiter.acquire(policy, "m", cost=0.1).finish(cost=0.1)
        clock.advance(86_400 + 31)      # the counter lives a period plus a day
    assert len(limiter.local.values) == 1


def test_a_round_trip_leader_killed_mid_send_does_not_stall_the_worker():
    """A greenlet killed while it sends the shared round trip (gevent raises a BaseException in it):
    the callers waiting on that round trip fail at once, and the next caller sends again."""
    from redis import Redis

    from deltallm.governance.redis_batch import ScriptBatcher
    from tests.conftest import REDIS_URL

    class Killed(BaseException):
        pass
    batcher = ScriptBatcher(Redis.from_url(REDIS_URL), wait_limit=2.0)
    real_send = batcher._send

    def dying_send(batch):
        raise Killed()
    batcher._send = dying_send
    with pytest.raises(Killed):
        batcher.call("return 1", [], [])
    assert batcher.sending is False
    batcher._send = real_send
    assert batcher.call("return 7", [], []) == 7


def test_a_settle_sent_twice_counts_its_cost_once_and_a_failed_one_is_sent_again(clock, redis_client, prefix):
    """A settle whose reply was lost may be sent again: the spend counter takes its cost once. A
    settle that failed (a Redis blip) goes out again with a later round trip and frees its slot."""
    limiter = Limiter(redis_client, prefix=prefix, clock=clock, seed=lambda key_id, start: 0.0)
    anchor = datetime.datetime.fromtimestamp(clock.now, datetime.timezone.utc).replace(tzinfo=None)
    policy = Policy("k9", parallel=1, max_budget=10.0, budget_duration="1h", budget_anchor=anchor)
    grant = limiter.acquire(policy, "m", cost=0.5)
    args = [grant.rid, grant.held[0], grant.held[1], 0, 0, grant.cost_nano, 300_000_000, *grant.flags]
    limiter.primary.finish(grant.keys, args, wait=True)
    limiter.primary.finish(grant.keys, args, wait=True)
    assert limiter.spend(policy)[0] == pytest.approx(0.3)
    # a failing round trip: the settle is kept and sent again once Redis answers
    batch = limiter.primary.batch
    real_send = batch._send
    failures = []

    def failing_once(items):
        if not failures:
            failures.append(1)
            for item in items:
                item.error = ConnectionError("blip")
                batch._retry_later(item, item.error)
            return
        real_send(items)
    second = limiter.acquire(policy, "m", cost=0.1)
    batch._send = failing_once
    second.done = False
    limiter.primary.finish(second.keys, [second.rid, second.held[0], second.held[1], 0, 0, second.cost_nano,
                                         100_000_000, *second.flags], wait=False)
    batch.flush()
    batch._send = real_send
    batch.flush()
    assert failures and limiter.acquire(policy, "m").holds_slot  # the slot was freed by the resent settle
    assert limiter.spend(policy)[0] == pytest.approx(0.4)


def test_one_round_trip_carries_replies_and_errors_in_order_on_its_own_connection():
    from redis import Redis
    from redis.exceptions import ResponseError

    from deltallm.governance.redis_batch import ScriptBatcher
    from tests.conftest import REDIS_URL
    batcher = ScriptBatcher(Redis.from_url(REDIS_URL))
    replies = batcher._round_trip([("EVAL", "return 1", 0), ("EVAL", "return redis.error_reply('boom')", 0),
                                   ("EVAL", "return ARGV[1]", 0, "three")])
    assert replies[0] == 1 and isinstance(replies[1], ResponseError) and replies[2] == b"three"
    assert len(batcher.idle) == 1  # the connection is clean (every reply read) and kept
    assert batcher._round_trip([("EVAL", "return 2", 0)]) == [2] and len(batcher.idle) == 1


def test_a_broken_connection_fails_every_command_of_the_round_trip_and_is_dropped():
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from deltallm.governance.redis_batch import ScriptBatcher
    batcher = ScriptBatcher(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5))
    replies = batcher._round_trip([("EVAL", "return 1", 0), ("EVAL", "return 2", 0)])
    assert len(replies) == 2 and all(isinstance(reply, RedisConnectionError) for reply in replies)
    assert batcher.idle == []


def test_a_script_redis_forgot_is_loaded_again():
    from redis import Redis

    from deltallm.governance.redis_batch import Pending, ScriptBatcher
    from tests.conftest import REDIS_URL
    batcher = ScriptBatcher(Redis.from_url(REDIS_URL))
    item = Pending("0" * 40, "return 41 + 1", [], [], waited=True)  # a sha Redis does not know
    batcher._send([item])
    assert item.result == 42 and item.error is None and item.done.is_set()
