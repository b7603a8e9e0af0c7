"""Deployment choice and retries: weighted shuffle over a group, retrying retryable failures within one deadline."""
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

from deltallm.errors import GatewayError, NoHealthyDeployments, UpstreamAuthFailed, UpstreamTimeout
from deltallm.providers.base import Call
from deltallm.providers.redact import MASK

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
        first byte are retried. All attempts share one deadline, the group's longest `timeout`: a
        timed-out deployment is not tried again, and a wait (backoff, a 429's Retry-After) that
        would outlast the deadline ends the retries with the last error.
        """
        group = self.registry.group(model_name)
        if not group:
            raise NoHealthyDeployments(f"No deployments available for model `{model_name}`.")
        # one deadline for this operation and its retries (a tool loop calling run again gets a new one)
        call.deadline = time.monotonic() + max(d.timeout for d in group)
        failed = {}  # deployment -> its last error in this request
        last = None
        for attempt in range(self.num_retries + 1):
            if last is not None and time.monotonic() >= call.deadline:
                break
            usable = [d for d in group if not isinstance(failed.get(d), UpstreamTimeout)]
            if not usable:
                break
            deployment = self.pick(usable, failed)
            wait = self.wait_before(failed.get(deployment), attempt)
            if wait and time.monotonic() + wait >= call.deadline:
                break
            if wait:
                time.sleep(wait)
            call.deployment = deployment
            call.attempts = attempt + 1
            try:
                return operation(deployment)
            except GatewayError as exc:
                mask_secrets(exc, deployment)
                self.explain(exc, deployment, call)
                if not exc.retryable:
                    raise
                last = failed[deployment] = exc
                logger.warning("request %s: deployment %s (%s) failed (%s), attempt %d: %s", call.request_id,
                               deployment.id, deployment.model_name, exc.code, attempt + 1,
                               exc.upstream_message or exc.message)
        raise last

    def wait_before(self, error, attempt):
        """Seconds to wait before trying a deployment again: none for a fresh one, its 429's
        Retry-After, else a short exponential backoff."""
        if error is None:
            return 0.0
        if error.retry_after is not None:
            return error.retry_after
        return min(self.retry_backoff * 2 ** attempt, 1.0) if self.retry_backoff else 0.0

    @staticmethod
    def explain(exc, deployment, call):
        """Name the deployment whose credentials failed (the upstream's words only go to the log)."""
        if isinstance(exc, UpstreamAuthFailed):
            logger.warning("request %s: deployment %s (%s, %s/%s): upstream refused the credentials: %s",
                           call.request_id, deployment.id, deployment.model_name, deployment.provider,
                           deployment.model, exc.upstream_message)
            exc.message = (f"The upstream rejected the credentials of deployment {deployment.id} "
                           f"(model `{deployment.model_name}`, {deployment.provider}/{deployment.model}); "
                           "check its api_key and access in the gateway's configuration.")

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


def mask_secrets(exc, deployment):
    """An upstream may echo our own credential verbatim (in any shape the patterns miss): mask the
    deployment's key, secret and token values in what is relayed and logged. Error path only."""
    secrets = [v for k, v in deployment.params.items() if isinstance(v, str) and len(v) >= 6
               and ("key" in k or "secret" in k or "token" in k)]
    for secret in secrets:
        if secret in exc.message:
            exc.message = exc.message.replace(secret, MASK)
        if exc.upstream_message and secret in exc.upstream_message:
            exc.upstream_message = exc.upstream_message.replace(secret, MASK)
