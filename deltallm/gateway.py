"""The process-wide gateway state built once from Settings: registry, router, key store, Redis."""
from deltallm import banner, model_store
from deltallm.cache.stores import store_for
from deltallm.config import upstream_environment
from deltallm.governance import prices, reports
from deltallm.governance.gate import Gate
from deltallm.governance.limits import Limiter
from deltallm.governance.usage import UsageWriter
from deltallm.jobs.files import storage_for
from deltallm.keys import KeyStore
from deltallm.mcp import store as mcp_store
from deltallm.mcp.loop import Limits as McpLimits
from deltallm.mcp.registry import McpRegistry
from deltallm.mcp.sessions import Sessions
from deltallm.providers.transport import HttpOptions
from deltallm.router.health import HealthChecker
from deltallm.router.policy import Policy
from deltallm.router.registry import ModelRegistry
from deltallm.router.router import Router
from deltallm.secrets import SecretBox
from deltallm.state import make_state


class Gateway:
    def __init__(self, settings):
        self.settings = settings
        routing = settings.router_settings
        self.secrets = SecretBox(settings.encryption_key)
        http = HttpOptions(max_event_mb=settings.general["max_stream_event_mb"], **upstream_environment())
        self.registry = ModelRegistry(settings.model_list, defaults={"timeout": routing["timeout"]},
                                      aliases=routing.get("model_group_alias"),
                                      loader=model_store.loader(self.secrets), http=http)
        self.keys = KeyStore(settings.master_key)
        general = settings.general
        self.mcp = McpRegistry(settings.mcp_servers, loader=mcp_store.loader(self.secrets),
                               timeout=general["mcp_timeout"], cache_seconds=general["mcp_tools_cache_seconds"])
        self.mcp_limits = McpLimits(general)
        banner.warn_once_per_process(settings)
        # one legacy completions request fans out to one upstream call per prompt (and n choices each)
        self.max_prompts = settings.general["max_prompts"]
        self.max_rerank_documents = settings.general["max_rerank_documents"]
        self.max_body_bytes = int(settings.general["max_request_body_mb"] * 1024 * 1024)
        # the 25 MB audio limit plus room for the other form fields
        self.max_transcription_bytes = int(settings.general["max_transcription_mb"] * 1024 * 1024) + 65536
        # Files API: uploads stream into this storage backend, up to max_file_size_mb each
        self.storage = storage_for(settings)
        self.batch_runner = None  # jobs.runner: built on first use
        self.max_file_bytes = int(settings.general["max_file_size_mb"] * 1024 * 1024)
        self.redis = None
        if settings.redis_url:
            import redis
            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                              socket_connect_timeout=5)
        # router state never waits long on Redis: it falls back to this worker's own state
        state_redis = self.redis and self.redis.__class__.from_url(settings.redis_url, socket_timeout=0.5,
                                                                    socket_connect_timeout=0.5)
        self.state = make_state(state_redis, ids=[d.id for d in self.registry.deployments()])
        self.router = Router(self.registry, Policy(routing, settings.deltallm_settings, settings.model_list),
                             self.state)
        # governance: the limiter's Redis client never retries and gives up fast (fail-open/closed decides)
        limiter_redis = self.redis and self.redis.__class__.from_url(
            settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry_on_timeout=False)
        self.mcp_sessions = Sessions(settings.encryption_key or settings.master_key, self.redis)
        self.limiter = Limiter(limiter_redis, fail_open=settings.general["rate_limit_fail_open"],
                               seed=reports.spend_since)
        self.writer = UsageWriter(max_queue=settings.general["usage_queue_size"])
        self.gate = Gate(self.limiter, self.writer)
        # tiktoken's encodings (~110 MB a worker) load on the first request that counts tokens (a key
        # with a tpm_limit or a budget), not here: a gateway without such keys never pays for them
        # the response cache (SPEC §10): None when off, and the views then skip it with this one check
        self.cache = store_for(settings)
        self.health = None
        if routing.get("health_check_interval"):
            self.health = HealthChecker(self.router, routing["health_check_interval"], state_redis)
            self.health.start()

    def admit(self, call, principal, model, body, *, endpoint, stream=False, batch_id=None):
        """Check and reserve `principal`'s limits for one request of `call` to public `model` (429/503
        when refused): the ticket is kept on the call, which governance.gate.settle() closes."""
        policy = principal.policy
        price = self.group_price(model) if policy is not None and policy.max_budget is not None else None
        call.tokenizer = self.tokenizer_model(model)
        call.ticket = self.gate.admit(policy, model, body, endpoint=endpoint, stream=stream, price=price,
                                      tokenizer_model=call.tokenizer, request_id=call.request_id,
                                      batch_id=batch_id)
        call.body = body

    def tokenizer_model(self, model):
        """The provider model whose tokenizer counts a group's prompts (its first deployment's)."""
        group = self.registry.groups.get(self.registry.resolve(model))
        return group[0].model if group else model

    def group_price(self, model):
        """The dearest prices of a group: what a budget reserves before a deployment is picked."""
        group = self.registry.groups.get(self.registry.resolve(model)) or ()
        return prices.highest([d.price for d in group])

    def close(self):
        """Flush what is buffered (usage records) and stop background work; a worker calls it on exit."""
        batch = getattr(self.limiter.primary, "batch", None)
        if batch is not None:
            batch.flush(timeout=2)  # settles still queued (they free leases and count spend)
        if self.batch_runner is not None:
            self.batch_runner.close()
        self.writer.close()
        if self.cache is not None:
            self.cache.close()
        from deltallm.api import access  # noqa: PLC0415 - the access log is the HTTP layer's
        access.flush()
