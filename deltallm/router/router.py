"""Deployment choice and retries: weighted shuffle over a group, retrying retryable failures."""
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

from deltallm.errors import GatewayError, NoHealthyDeployments
from deltallm.providers.base import Call

logger = logging.getLogger(__name__)


class Router:
    def __init__(self, registry, num_retries=2, retry_backoff=0.05):
        self.registry = registry
        self.num_retries = num_retries
        self.retry_backoff = retry_backoff

    @staticmethod
    def pick(group, exclude=()):
        """Weighted random choice, preferring deployments not yet tried for this request."""
        fresh = [d for d in group if d not in exclude] or group
        if len(fresh) == 1:
            return fresh[0]
        return random.choices(fresh, weights=[d.weight for d in fresh])[0]

    def run(self, call, model_name, operation):
        """Run operation(deployment) on the group, retrying retryable errors on other deployments.

        Streams use this too: the operation opens the upstream stream, so only failures before the
        first byte are retried.
        """
        group = self.registry.group(model_name)
        if not group:
            raise NoHealthyDeployments(f"No deployments available for model `{model_name}`.")
        tried = []
        last = None
        for attempt in range(self.num_retries + 1):
            deployment = self.pick(group, tried)
            call.deployment = deployment
            call.attempts = attempt + 1
            try:
                return operation(deployment)
            except GatewayError as exc:
                if not exc.retryable:
                    raise
                last = exc
                logger.warning("request %s: deployment %s failed (%s), attempt %d",
                               call.request_id, deployment.id, exc.code, attempt + 1)
                if deployment in tried and self.retry_backoff:
                    time.sleep(min(self.retry_backoff * 2 ** attempt, 1.0))
                tried.append(deployment)
        raise last

    def run_each(self, call, model_name, bodies, operation):
        """operation(deployment, call, body) for each body, concurrently (green threads under gevent).

        Each body gets its own Call; `call` ends up with the longest upstream wait, so the overhead
        header still means time spent in the gateway.
        """
        if len(bodies) == 1:
            return [self.run(call, model_name, lambda d: operation(d, call, bodies[0]))]
        calls = [Call(call.request_id) for _ in bodies]

        def one(index):
            sub = calls[index]
            return self.run(sub, model_name, lambda d: operation(d, sub, bodies[index]))
        with ThreadPoolExecutor(max_workers=min(len(bodies), 16)) as pool:
            results = list(pool.map(one, range(len(bodies))))
        call.upstream_s += max(c.upstream_s for c in calls)
        call.deployment = calls[0].deployment
        return results
