"""The process-wide gateway state built once from Settings: registry, router, key store, Redis."""
from deltallm import banner
from deltallm.config import upstream_environment
from deltallm.keys import KeyStore
from deltallm.providers.transport import HttpOptions
from deltallm.router.registry import ModelRegistry
from deltallm.router.router import Router


class Gateway:
    def __init__(self, settings):
        self.settings = settings
        routing = settings.router_settings
        http = HttpOptions(max_event_mb=settings.general["max_stream_event_mb"], **upstream_environment())
        self.registry = ModelRegistry(settings.model_list, defaults={"timeout": routing["timeout"]}, http=http)
        self.router = Router(self.registry, num_retries=routing["num_retries"])
        self.keys = KeyStore(settings.master_key)
        banner.warn_once_per_process(settings)
        # one legacy completions request fans out to one upstream call per prompt (and n choices each)
        self.max_prompts = settings.general["max_prompts"]
        self.max_body_bytes = int(settings.general["max_request_body_mb"] * 1024 * 1024)
        # the 25 MB audio limit plus room for the other form fields
        self.max_transcription_bytes = int(settings.general["max_transcription_mb"] * 1024 * 1024) + 65536
        self.redis = None
        if settings.redis_url:
            import redis
            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                              socket_connect_timeout=5)
