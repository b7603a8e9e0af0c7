"""Optional active health checks: probe every deployment in the background and feed the cooldowns.

Enabled by `router_settings.health_check_interval` (seconds). A probe is the cheapest real request the
deployment's mode allows (a one-token chat completion, or a one-word embedding); a failing probe
counts like a failed request, so a dead deployment cools before clients find out. With Redis, one
worker per interval probes (a short lock), not every worker of every instance.
"""
import logging
import threading
import time
import uuid
import weakref

from deltallm.errors import GatewayError
from deltallm.providers.base import Call

logger = logging.getLogger(__name__)
PROBE_TIMEOUT = 30.0


def probe(deployment):
    """One cheap request to a deployment; raises the mapped GatewayError when it fails."""
    call = Call(f"health_{uuid.uuid4().hex[:12]}", deadline=time.monotonic() + PROBE_TIMEOUT)
    mode = deployment.model_info.get("mode") or "chat"
    if mode == "embedding":
        return deployment.adapter.embeddings(call, {"model": deployment.model_name, "input": "ping"})
    if mode in ("chat", "completion", "responses"):
        return deployment.adapter.chat(call, {"model": deployment.model_name, "max_tokens": 1,
                                              "messages": [{"role": "user", "content": "ping"}]})
    return None  # image, audio and rerank deployments are not probed: there is no cheap request


class HealthChecker:
    def __init__(self, router, interval, redis=None, prefix="deltallm:health:"):
        self.router = router
        self.interval = interval
        self.redis = redis
        self.prefix = prefix
        self.thread = None

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=check_forever, args=(weakref.ref(self), self.interval),
                                           name="deltallm-health-check", daemon=True)
            self.thread.start()

    def my_turn(self):
        """With Redis, only the worker that takes this interval's lock probes."""
        if self.redis is None:
            return True
        try:
            return bool(self.redis.set(self.prefix + "lock", "1", nx=True, px=int(self.interval * 1000)))
        except Exception:  # noqa: BLE001 - no Redis: every worker probes, which is still correct
            return True

    def check_all(self):
        """Probe every deployment once; returns {deployment id: None | error code}."""
        results = {}
        for deployment in self.router.registry.deployments():
            started = time.perf_counter()
            try:
                probe(deployment)
            except GatewayError as exc:
                self.router.after_failure(Call("health-check"), deployment, exc)
                results[deployment.id] = exc.code or exc.type
                logger.warning("health check: deployment %s failed: %s", deployment.id, exc.code or exc.type)
                continue
            except Exception as exc:  # noqa: BLE001 - a probe must never kill the loop
                results[deployment.id] = exc.__class__.__name__
                logger.warning("health check: deployment %s: %s", deployment.id, exc.__class__.__name__)
                continue
            self.router.state.observe(deployment.id, time.perf_counter() - started)
            results[deployment.id] = None
        return results


def check_forever(ref, interval):
    tick = threading.Event()  # not time.sleep: tests that patch it must not make this a busy loop
    while True:
        tick.wait(interval)
        checker = ref()
        if checker is None:
            return
        if checker.my_turn():
            checker.check_all()
        del checker
