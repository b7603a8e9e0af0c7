"""The runtime model registry: public model names -> deployment groups, held in memory."""
import time

from deltallm.errors import ModelNotFound
from deltallm.router.deployment import Deployment


class ModelRegistry:
    def __init__(self, model_list=(), defaults=None, http=None):
        self.created = int(time.time())
        self.defaults = dict(defaults or {})
        self.http = http  # providers.transport.HttpOptions, shared by every deployment
        self.groups = {}
        for entry in model_list:
            self.add(Deployment(entry["model_name"], self.with_defaults(entry["params"]),
                                entry.get("model_info"), id=(entry.get("model_info") or {}).get("id"),
                                http=http))

    def with_defaults(self, params):
        merged = dict(self.defaults)
        merged.update({k: v for k, v in params.items() if v is not None})
        return merged

    def add(self, deployment):
        self.groups.setdefault(deployment.model_name, []).append(deployment)
        return deployment

    def names(self):
        return list(self.groups)

    def group(self, name):
        found = self.groups.get(name)
        if not found:
            raise ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.",
                                param="model")
        return found

    def deployments(self):
        return [d for group in self.groups.values() for d in group]
