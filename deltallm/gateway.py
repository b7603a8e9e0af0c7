"""The process-wide gateway state built once from Settings: registry, router, key store, Redis."""
from deltallm import banner, model_store
from deltallm.keys import KeyStore
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
        self.registry = ModelRegistry(settings.model_list, defaults={"timeout": routing["timeout"]},
                                      aliases=routing.get("model_group_alias"),
                                      loader=model_store.loader(self.secrets))
        self.keys = KeyStore(settings.master_key)
        banner.warn_once_per_process(settings)
        self.max_body_bytes = int(settings.general["max_request_body_mb"] * 1024 * 1024)
        # the 25 MB audio limit plus room for the other form fields
        self.max_transcription_bytes = int(settings.general["max_transcription_mb"] * 1024 * 1024) + 65536
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
        self.health = None
        if routing.get("health_check_interval"):
            self.health = HealthChecker(self.router, routing["health_check_interval"], state_redis)
            self.health.start()
