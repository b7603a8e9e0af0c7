"""Deployment choice, retries, cooldowns and fallbacks (SPEC §9) over the shared router state."""
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

from deltallm.errors import (GatewayError, NoHealthyDeployments, RateLimited, UpstreamAuthFailed,
                             UpstreamTimeout)
from deltallm.providers.base import Call
from deltallm.providers.redact import MASK
from deltallm.router.deployment import secret_values
from deltallm.router.modes import endpoint_mode, serves, serving
from deltallm.router.policy import Policy
from deltallm.router.strategies import choose
from deltallm.state import LocalState, retry_after_seconds

logger = logging.getLogger(__name__)
BACKOFF = 0.05


def failure_kind(exc):
    """Which fallback chain an error leads to: 'context_window', 'content_policy', 'error', or None
    (a client error that no other model would answer differently)."""
    kind = getattr(exc, "kind", None)
    if kind in ("context_window", "content_policy"):
        return kind
    if exc.retryable or getattr(exc, "deployment_fault", False) or isinstance(exc, (NoHealthyDeployments,
                                                                                   RateLimited)):
        return "error"
    return None


class Router:
    def __init__(self, registry, policy=None, state=None, clock=time.time, sleep=None, rng=random):
        self.registry = registry
        self.policy = policy or Policy()
        self.state = state or LocalState(clock=clock)
        self.clock, self.rng = clock, rng
        self.sleep = sleep or (lambda seconds: time.sleep(seconds))  # looked up per call: tests patch it

    # -- one request --------------------------------------------------------------------------
    def run(self, call, model_name, operation, *, may_use=None, fallbacks=None):
        """operation(deployment) on the model's group, with retries; then its fallback groups in order.

        Streams use this too: the operation opens the upstream stream, so only failures before the
        first byte are retried or fall back."""
        group_name = self.registry.resolve(model_name)
        may_use = may_use or call.may_use
        fallbacks = fallbacks if fallbacks is not None else call.fallbacks
        if call.deadline is None:
            call.deadline = time.monotonic() + self.timeout_for(group_name)
        try:
            return self.run_group(call, group_name, operation)
        except GatewayError as first:
            kind = failure_kind(first)
            if kind is None:
                raise
            last = first
        for name in self.policy.fallbacks_for(group_name, kind, fallbacks):
            name = self.registry.resolve(name)
            if name == group_name or not self.registry.has(name) or (may_use and not may_use(name)):
                continue
            if not any(serves(d, endpoint_mode(call.endpoint)) for d in self.registry.group(name)):
                continue  # a fallback group of another mode (embeddings for chat) cannot answer
            if call.remaining() <= 0:
                break
            try:
                result = self.run_group(call, name, operation)
            except GatewayError as exc:
                if failure_kind(exc) is None:
                    raise
                last = exc
                continue
            call.fallback = name
            logger.info("request %s: answered by fallback group %s", call.request_id, name)
            return result
        raise last

    def timeout_for(self, group_name):
        """The request's deadline: its group's longest deployment `timeout` (shared by every retry)."""
        group = self.registry.groups.get(group_name) or ()
        return max((d.timeout for d in group), default=self.policy.timeout)

    def run_group(self, call, group_name, operation):
        # checked before any upstream call: a model of another mode is a 400, never an upstream error
        group = serving(self.registry.group(group_name), endpoint_mode(call.endpoint), call.endpoint, group_name)
        strategy = self.policy.strategy_for(group_name)
        ids = [d.id for d in group]
        tried, last = {}, None
        for attempt in range(self.policy.num_retries + 1):
            if call.remaining() <= 0:
                raise last if isinstance(last, UpstreamTimeout) else UpstreamTimeout(
                    "The request's timeout ran out before an upstream answered.")
            now = self.clock()
            stats = self.state.stats(ids)
            fresh = [d for d in group if d.id not in tried and stats[d.id].cooling_until <= now]
            if fresh:
                deployment = choose(strategy, fresh, stats, self.rng)
                if deployment is None:
                    raise last or self.at_capacity(group_name)
            else:
                deployment = self.retry_same(call, group, tried, stats, now, attempt)
                if deployment is None:
                    break
            try:
                return self.attempt(call, deployment, operation)
            except GatewayError as exc:
                mask_secrets(exc, deployment)
                explain(exc, deployment, call)
                self.after_failure(call, deployment, exc)
                if failure_kind(exc) != "error":
                    raise
                tried[deployment.id], last = exc, exc
        if last is not None:
            raise last
        raise self.all_cooling(group_name, group)

    def retry_same(self, call, group, tried, stats, now, attempt):
        """A deployment this request already tried, once its Retry-After (or a short backoff) has passed;
        never after a timeout (it already cost its time) or a credentials/not-found fault; a deployment
        cooling for others is retried only when its own Retry-After said when."""
        best, best_wait = None, None
        for d in group:
            exc = tried.get(d.id)
            if exc is None or isinstance(exc, UpstreamTimeout) or getattr(exc, "deployment_fault", False):
                continue
            told = getattr(exc, "retry_after", None)
            if told is None and stats[d.id].cooling_until > now:
                continue
            wait = told if told is not None else min(BACKOFF * 2 ** attempt, 1.0)
            if best_wait is None or wait < best_wait:
                best, best_wait = d, wait
        if best is None or best_wait >= call.remaining():
            return None
        if best_wait > 0:
            self.sleep(best_wait)
        return best

    def attempt(self, call, deployment, operation):
        call.deployment = deployment
        call.attempts += 1
        self.state.begin(deployment.id)
        started = time.perf_counter()
        first = NOTHING
        try:
            result = operation(deployment)
            if hasattr(result, "__next__"):
                # A stream counts as started only when its first chunk arrived: an upstream that opens
                # the stream and then fails (an overload event, a cut) is retried or falls back, since
                # the client has not been sent a byte yet.
                try:
                    first = next(result)
                except StopIteration:
                    pass
                except BaseException:
                    close = getattr(result, "close", None)
                    if close:
                        close()
                    raise
        except BaseException:
            self.state.end(deployment.id)
            raise
        latency = time.perf_counter() - started  # for streams: time to the first chunk
        if hasattr(result, "__next__"):  # an open stream: in flight until it ends
            tracked = Tracked(result, self.state, deployment.id, latency, first, call)
            call.sink.streams.append(tracked)
            return tracked
        if isinstance(result, dict):
            call.add_usage(result.get("usage"))
        self.state.end(deployment.id, latency=latency, tokens=usage_tokens(result))
        return result

    def after_failure(self, call, deployment, exc):
        """Cooldowns: credentials/not-found faults and 429s cool at once (a longer Retry-After extends it),
        other retryable failures count towards allowed_fails; client errors never cool."""
        policy = self.policy
        if getattr(exc, "deployment_fault", False) or exc.status == 429 and exc.retryable:
            until = self.state.cool(deployment.id, max(policy.cooldown_time, getattr(exc, "retry_after", 0) or 0))
        elif exc.retryable:
            until = self.state.fail(deployment.id, policy.allowed_fails, policy.cooldown_time)
        else:
            return
        logger.warning("request %s: deployment %s (%s) failed (%s)%s: %s", call.request_id, deployment.id,
                       deployment.model_name, exc.code, f"; cooling for {until - self.clock():.0f} s" if until else "",
                       exc.upstream_message or exc.message)

    def all_cooling(self, group_name, group):
        now = self.clock()
        stats = self.state.stats([d.id for d in group])
        first_back = min(stats[d.id].cooling_until for d in group)
        wait = retry_after_seconds(first_back, now)
        return NoHealthyDeployments(f"Every deployment of `{group_name}` is cooling down after failures; "
                                    f"retry in {wait} s.", headers={"Retry-After": str(wait)})

    def at_capacity(self, group_name):
        wait = retry_after_seconds((int(self.clock() // 60) + 1) * 60, self.clock())
        return RateLimited(f"Every deployment of `{group_name}` is at its rpm/tpm limit for this minute.",
                           headers={"Retry-After": str(wait)})

    # -- legacy completions: several bodies at once ---------------------------------------------
    def run_each(self, call, model_name, bodies, operation, **options):
        """operation(deployment, call, body) for each body, concurrently (green threads under gevent).

        Each body gets its own Call; `call` ends up with the longest upstream wait, so the overhead
        header still means time spent in the gateway."""
        if len(bodies) == 1:
            return [self.run(call, model_name, lambda d: operation(d, call, bodies[0]), **options)]
        if call.deadline is None:
            call.deadline = time.monotonic() + self.timeout_for(self.registry.resolve(model_name))
        calls = [Call(call.request_id, deadline=call.deadline, may_use=call.may_use, fallbacks=call.fallbacks,
                      sink=call, endpoint=call.endpoint) for _ in bodies]

        def one(index):
            sub = calls[index]
            return self.run(sub, model_name, lambda d: operation(d, sub, bodies[index]), **options)
        try:
            with ThreadPoolExecutor(max_workers=min(len(bodies), 16)) as pool:
                results = list(pool.map(one, range(len(bodies))))
        finally:
            # the request reached an upstream if any prompt did (its usage record and billing depend
            # on it), failed or not
            call.attempts += sum(c.attempts for c in calls)
            call.upstream_s += max(c.upstream_s for c in calls)
            call.deployment = next((c.deployment for c in calls if c.deployment is not None), call.deployment)
            call.fallback = next((c.fallback for c in calls if c.fallback is not None), call.fallback)
        return results


def explain(exc, deployment, call):
    """Name the deployment whose credentials failed (the upstream's words only go to the log)."""
    if isinstance(exc, UpstreamAuthFailed):
        logger.warning("request %s: deployment %s (%s, %s/%s): upstream refused the credentials: %s",
                       call.request_id, deployment.id, deployment.model_name, deployment.provider,
                       deployment.model, exc.upstream_message)
        exc.message = (f"The upstream rejected the credentials of deployment {deployment.id} "
                       f"(model `{deployment.model_name}`, {deployment.provider}/{deployment.model}); "
                       "check its api_key and access in the gateway's configuration.")


def mask_secrets(exc, deployment):
    """An upstream may echo our own credential verbatim (in any shape the patterns miss): mask the
    deployment's key, secret and token values in what is relayed and logged. Error path only."""
    for secret in secret_values(deployment.params):
        if secret in exc.message:
            exc.message = exc.message.replace(secret, MASK)
        if exc.upstream_message and secret in exc.upstream_message:
            exc.upstream_message = exc.upstream_message.replace(secret, MASK)


def usage_tokens(result):
    usage = result.get("usage") if isinstance(result, dict) else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) and total > 0 else 0


NOTHING = object()


class Tracked:
    """A stream (its first chunk already read) that keeps its deployment's in-flight count until it
    ends (or is dropped: a client that disconnected), and counts its tokens for the request."""

    def __init__(self, chunks, state, deployment_id, latency, first=NOTHING, call=None):
        self.chunks, self.state, self.id, self.latency = chunks, state, deployment_id, latency
        self.first, self.call = first, call
        self.tokens, self.usage, self.open = 0, None, True

    def __iter__(self):
        return self

    def __next__(self):
        if self.first is not NOTHING:
            chunk, self.first = self.first, NOTHING
        else:
            try:
                chunk = next(self.chunks)
            except BaseException:
                self.close()
                raise
        if isinstance(chunk, dict):
            if chunk.get("usage"):
                self.usage = chunk["usage"]
                self.tokens = usage_tokens(chunk) or self.tokens
            elif self.call is not None:
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                    if isinstance(content, str):
                        self.call.sink.text_chars += len(content)
        return chunk

    def close(self):
        if self.open:
            self.open = False
            if self.call is not None:
                self.call.add_usage(self.usage)
            self.state.end(self.id, latency=self.latency, tokens=self.tokens)
            close = getattr(self.chunks, "close", None)
            if close:
                close()

    def __del__(self):
        self.close()
