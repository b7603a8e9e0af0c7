"""Active health checks: failing probes feed cooldowns; image/audio deployments are not probed."""
from deltallm.errors import UpstreamError
from deltallm.router import health
from deltallm.router.health import HealthChecker
from deltallm.router.policy import Policy
from deltallm.router.registry import ModelRegistry
from deltallm.router.router import Router
from deltallm.state import LocalState


def test_failing_probes_cool_a_deployment_and_healthy_ones_are_measured(monkeypatch):
    entries = [{"model_name": "g", "params": {"model": "mock/a"}, "model_info": {"id": "a"}},
               {"model_name": "g", "params": {"model": "mock/b"}, "model_info": {"id": "b"}},
               {"model_name": "img", "params": {"model": "mock/c"}, "model_info": {"id": "c", "mode": "image_generation"}}]
    router = Router(ModelRegistry(entries), Policy({"allowed_fails": 1}, {}, entries), LocalState())

    def fake_chat(self, call, body):
        assert body["max_tokens"] == 1 and call.deadline is not None
        if self.deployment.id == "a":
            raise UpstreamError("down")
        return {"choices": []}
    monkeypatch.setattr("deltallm.providers.mock.MockProvider.chat", fake_chat)
    checker = HealthChecker(router, interval=30)
    assert checker.check_all() == {"a": "upstream_error", "b": None, "c": None}
    checker.check_all()
    stats = router.state.stats(["a", "b"])
    assert stats["a"].cooling_until > 0 and stats["b"].samples == 2


def test_only_one_worker_probes_per_interval_with_redis():
    from redis import Redis

    from tests.conftest import REDIS_URL
    redis = Redis.from_url(REDIS_URL)
    prefix = "deltallm-test:health:" + __import__("uuid").uuid4().hex[:8] + ":"
    one = HealthChecker(None, interval=5, redis=redis, prefix=prefix)
    two = HealthChecker(None, interval=5, redis=redis, prefix=prefix)
    try:
        assert one.my_turn() is True and two.my_turn() is False
    finally:
        redis.delete(prefix + "lock")


def test_probe_skips_modes_without_a_cheap_request():
    class Dep:
        model_info = {"mode": "audio_speech"}
    assert health.probe(Dep()) is None
