"""Router rules (SPEC §9), table-driven with a fake clock and scripted deployments (no HTTP)."""
import random
import time

import pytest

from deltallm.errors import (GatewayError, NoHealthyDeployments, UpstreamAuthFailed, UpstreamError,
                             UpstreamRateLimited, UpstreamRejected, UpstreamTimeout)
from deltallm.providers.base import Call
from deltallm.router.policy import Policy
from deltallm.router.registry import ModelRegistry
from deltallm.router.router import Router
from deltallm.state import LocalState


class Clock:
    def __init__(self):
        self.now = 1_000_000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def entry(group, name, **params):
    return {"model_name": group, "params": {"model": f"mock/{name}", **params}, "model_info": {"id": name}}


def make(entries, **router_settings):
    clock = Clock()
    registry = ModelRegistry(entries)
    policy = Policy({"num_retries": 2, **router_settings}, {}, entries)
    return Router(registry, policy, LocalState(clock=clock), clock=clock, sleep=clock.sleep,
                  rng=random.Random(1)), clock


def scripted(outcomes):
    """operation(deployment): pops the next outcome for that deployment (an exception or a result)."""
    seen = []

    def operation(deployment):
        seen.append(deployment.id)
        outcome = outcomes[deployment.id].pop(0) if outcomes[deployment.id] else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        return {"answered_by": deployment.id}
    return operation, seen


def rate_limited(after=None):
    exc = UpstreamRateLimited("slow down")
    exc.retry_after = after
    return exc


def fault():
    exc = UpstreamAuthFailed("bad credentials")
    exc.deployment_fault = True
    return exc


def refusal(kind):
    exc = UpstreamRejected("too long", status=400)
    exc.kind = kind
    return exc


def test_a_failure_is_retried_on_another_deployment_first():
    router, _ = make([entry("g", "a"), entry("g", "b")])
    op, seen = scripted({"a": [UpstreamError("boom")], "b": [UpstreamError("boom")]})
    result = router.run(Call("r"), "g", op)
    assert len(set(seen[:2])) == 2 and result["answered_by"] == seen[-1]


def test_retry_after_is_honoured_only_for_the_same_deployment():
    router, clock = make([entry("g", "a")], cooldown_time=60)
    op, seen = scripted({"a": [rate_limited(after=2.0)]})
    assert router.run(Call("r"), "g", op)["answered_by"] == "a"
    assert seen == ["a", "a"] and clock.slept == [2.0]
    # with two deployments the other one is tried at once
    router, clock = make([entry("g", "a"), entry("g", "b")])
    op, seen = scripted({"a": [rate_limited(after=5.0)], "b": [rate_limited(after=5.0)]})
    first = router.run(Call("r"), "g", op)
    assert clock.slept in ([5.0], []) and first["answered_by"] in ("a", "b") and len(set(seen)) == 2


def test_retry_after_longer_than_the_deadline_is_not_waited_for():
    router, clock = make([entry("g", "a")])
    op, seen = scripted({"a": [rate_limited(after=30.0)]})
    with pytest.raises(UpstreamRateLimited):
        router.run(Call("r", deadline=time.monotonic() + 5), "g", op)
    assert clock.slept == [] and seen == ["a"]


def test_a_timeout_is_never_retried_on_the_same_deployment():
    router, _ = make([entry("g", "a")])
    op, seen = scripted({"a": [UpstreamTimeout("slow")]})
    with pytest.raises(UpstreamTimeout):
        router.run(Call("r"), "g", op)
    assert seen == ["a"]


def test_failures_past_allowed_fails_cool_a_deployment_and_it_returns_by_itself():
    router, clock = make([entry("g", "a"), entry("g", "b")], allowed_fails=1, cooldown_time=30, num_retries=0)
    op, seen = scripted({"a": [UpstreamError("x"), UpstreamError("x")] + [UpstreamError("x")] * 10, "b": []})
    for _ in range(30):
        try:
            router.run(Call("r"), "g", op)
        except UpstreamError:
            pass
    assert seen.count("a") == 2  # the second failure within a minute cooled it
    clock.now += 31
    seen.clear()
    for _ in range(40):
        try:
            router.run(Call("r"), "g", op)
        except UpstreamError:
            pass
    assert "a" in seen


@pytest.mark.parametrize("error", [fault, lambda: rate_limited()])
def test_credentials_faults_and_429s_cool_at_once(error):
    router, clock = make([entry("g", "a"), entry("g", "b")], cooldown_time=60)
    op, seen = scripted({"a": [error() for _ in range(50)], "b": []})
    while "a" not in seen:
        assert router.run(Call("r"), "g", op)["answered_by"] == "b"
    seen.clear()
    for _ in range(20):
        router.run(Call("r"), "g", op)
    assert seen == ["b"] * 20
    clock.now += 61
    for _ in range(20):
        router.run(Call("r"), "g", op)
    assert "a" in seen


def test_a_longer_retry_after_extends_the_cooldown():
    router, clock = make([entry("g", "a"), entry("g", "b")], cooldown_time=10)
    op, seen = scripted({"a": [rate_limited(after=120) for _ in range(50)], "b": []})
    while "a" not in seen:
        router.run(Call("r"), "g", op)
    clock.now += 60
    assert router.state.stats(["a"])["a"].cooling_until > clock.now


def test_client_errors_never_cool_and_are_not_retried():
    router, _ = make([entry("g", "a"), entry("g", "b")], allowed_fails=0)
    op, seen = scripted({"a": [UpstreamRejected("bad", status=400)] * 5, "b": [UpstreamRejected("bad", status=400)] * 5})
    for _ in range(3):
        with pytest.raises(UpstreamRejected):
            router.run(Call("r"), "g", op)
    assert len(seen) == 3
    assert all(s.cooling_until == 0 for s in router.state.stats(["a", "b"]).values())


def test_every_deployment_cooling_is_503_with_retry_after():
    router, clock = make([entry("g", "a"), entry("g", "b")], cooldown_time=42)
    router.state.cool("a", 42)
    router.state.cool("b", 10.5)
    op, seen = scripted({"a": [], "b": []})
    with pytest.raises(NoHealthyDeployments) as caught:
        router.run(Call("r"), "g", op)
    assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "11" and seen == []


def test_fallbacks_answer_when_the_group_is_exhausted():
    entries = [entry("primary", "a"), entry("backup", "b"), entry("other", "c")]
    router, _ = make(entries, fallbacks=[{"primary": ["backup"]}])
    op, seen = scripted({"a": [UpstreamError("x")] * 5, "b": [], "c": []})
    call = Call("r")
    assert router.run(call, "primary", op)["answered_by"] == "b"
    assert call.fallback == "backup" and seen.count("a") == 3


def test_credentials_faults_fall_back_too_but_client_errors_do_not():
    entries = [entry("primary", "a"), entry("backup", "b")]
    router, _ = make(entries, fallbacks=[{"primary": ["backup"]}])
    op, _ = scripted({"a": [fault()], "b": []})
    assert router.run(Call("r"), "primary", op)["answered_by"] == "b"
    router, _ = make(entries, fallbacks=[{"primary": ["backup"]}])
    op, seen = scripted({"a": [UpstreamRejected("bad", status=400)], "b": []})
    with pytest.raises(UpstreamRejected):
        router.run(Call("r"), "primary", op)
    assert seen == ["a"]


@pytest.mark.parametrize("kind,expected", [("context_window", "big"), ("content_policy", "lenient")])
def test_refusals_go_straight_to_their_own_fallbacks(kind, expected):
    entries = [entry("primary", "a"), entry("backup", "b"), entry("big", "c"), entry("lenient", "d")]
    router, _ = make(entries, fallbacks=[{"primary": ["backup"]}],
                     context_window_fallbacks=[{"primary": ["big"]}],
                     content_policy_fallbacks=[{"primary": ["lenient"]}])
    op, seen = scripted({"a": [refusal(kind)], "b": [], "c": [], "d": []})
    call = Call("r")
    assert router.run(call, "primary", op)["answered_by"] == {"big": "c", "lenient": "d"}[expected]
    assert seen[0] == "a" and len(seen) == 2 and call.fallback == expected


def test_fallback_groups_the_key_may_not_use_are_skipped():
    entries = [entry("primary", "a"), entry("secret", "b"), entry("open", "c")]
    router, _ = make(entries, fallbacks=[{"primary": ["secret", "open"]}])
    op, seen = scripted({"a": [UpstreamError("x")] * 5, "b": [], "c": []})
    assert router.run(Call("r"), "primary", op, may_use=lambda name: name != "secret")["answered_by"] == "c"
    assert "b" not in seen


def test_request_fallbacks_replace_the_configured_ones():
    entries = [entry("primary", "a"), entry("backup", "b"), entry("mine", "c")]
    router, _ = make(entries, fallbacks=[{"primary": ["backup"]}])
    op, _ = scripted({"a": [UpstreamError("x")] * 5, "b": [], "c": []})
    assert router.run(Call("r"), "primary", op, fallbacks=["mine"])["answered_by"] == "c"
    op, _ = scripted({"a": [UpstreamError("x")] * 5, "b": [], "c": []})
    with pytest.raises(UpstreamError):
        router.run(Call("r"), "primary", op, fallbacks=[])


def test_fallbacks_from_deltallm_settings_and_aliases():
    entries = [entry("primary", "a"), entry("backup", "b")]
    clock = Clock()
    registry = ModelRegistry(entries, aliases={"nickname": "primary"})
    router = Router(registry, Policy({}, {"fallbacks": [{"primary": ["backup"]}]}, entries),
                    LocalState(clock=clock), clock=clock, sleep=clock.sleep)
    op, _ = scripted({"a": [UpstreamError("x")] * 5, "b": []})
    assert router.run(Call("r"), "nickname", op)["answered_by"] == "b"


def test_an_expired_deadline_is_a_timeout_without_another_attempt():
    router, _ = make([entry("g", "a"), entry("g", "b")])
    op, seen = scripted({"a": [], "b": []})
    with pytest.raises(UpstreamTimeout):
        router.run(Call("r", deadline=time.monotonic() - 1), "g", op)
    assert seen == []


def test_streams_stay_in_flight_until_they_end():
    router, _ = make([entry("g", "a")], routing_strategy="least-busy")
    stream = router.run(Call("r"), "g", lambda d: iter([{"choices": []}, {"choices": [], "usage": {"total_tokens": 9}}]))
    assert router.state.stats(["a"])["a"].in_flight == 1
    assert len(list(stream)) == 2
    stats = router.state.stats(["a"])["a"]
    assert stats.in_flight == 0 and stats.tokens == 9


def test_least_busy_spreads_open_streams():
    router, _ = make([entry("g", "a"), entry("g", "b"), entry("g", "c")], routing_strategy="least-busy")
    opened = [router.run(Call("r"), "g", lambda d: iter([d.id])) for _ in range(6)]
    assert sorted(next(s) for s in opened) == ["a", "a", "b", "b", "c", "c"]


def test_usage_based_skips_deployments_at_their_rpm():
    router, _ = make([entry("g", "a", rpm=2), entry("g", "b", rpm=100)], routing_strategy="usage-based-routing")
    op, seen = scripted({"a": [], "b": []})
    for _ in range(10):
        router.run(Call("r"), "g", op)
    assert seen.count("a") <= 2


def test_group_strategy_override():
    entries = [entry("g", "a"), entry("g", "b")]
    policy = Policy({"routing_strategy": "simple-shuffle", "model_group_strategy": {"g": "least-busy"}}, {}, entries)
    assert policy.strategy_for("g") == "least-busy" and policy.strategy_for("h") == "simple-shuffle"


def test_errors_without_routing_facts_propagate():
    router, _ = make([entry("g", "a")])
    with pytest.raises(GatewayError):
        router.run(Call("r"), "g", lambda d: (_ for _ in ()).throw(GatewayError("bug")))


def test_a_stream_that_fails_before_its_first_chunk_is_retried_elsewhere():
    router, _ = make([entry("g", "a"), entry("g", "b")])
    opened = []

    def operation(deployment):
        opened.append(deployment.id)

        def chunks():
            if deployment.id == opened[0]:
                raise UpstreamError("overloaded")  # an error event as the stream's first event
            yield {"choices": [{"delta": {"content": "hi"}}]}
        return chunks()
    stream = router.run(Call("r"), "g", operation)
    assert [c["choices"][0]["delta"]["content"] for c in stream] == ["hi"]
    assert len(set(opened)) == 2
    assert all(s.in_flight == 0 for s in router.state.stats(["a", "b"]).values())


def test_a_stream_failing_after_its_first_chunk_is_the_caller_s_to_report():
    router, _ = make([entry("g", "a")])

    def chunks():
        yield {"choices": []}
        raise UpstreamError("cut")
    stream = router.run(Call("r"), "g", lambda d: chunks())
    assert next(stream) == {"choices": []}
    with pytest.raises(UpstreamError):
        next(stream)
    assert router.state.stats(["a"])["a"].in_flight == 0


def test_an_upstream_409_is_retried_on_another_deployment():
    from deltallm.providers.base import map_status
    conflict = map_status("openai", 409, "conflict")
    assert conflict.retryable and conflict.status == 409
    router, _ = make([entry("g", "a"), entry("g", "b")])
    op, seen = scripted({"a": [map_status("openai", 409, "busy")], "b": [map_status("openai", 409, "busy")]})
    router.run(Call("r"), "g", op)
    assert len(set(seen)) == 2
