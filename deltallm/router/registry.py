"""The runtime model registry: public model names -> deployment groups, held in memory.

Config deployments are fixed for the life of the process; deployments added through the admin API
come from a `loader` (the database) that is asked again at most once per `refresh_interval` seconds,
so every worker sees an added or deleted deployment within about a second, without a restart.
"""
import logging
import time

from deltallm.errors import ModelNotFound
from deltallm.router.deployment import Deployment
from deltallm.stored import StoredRows

logger = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, model_list=(), defaults=None, aliases=None, loader=None, refresh_interval=1.0, http=None):
        self.created = int(time.time())
        self.defaults = dict(defaults or {})
        self.aliases = dict(aliases or {})
        self.stored = StoredRows(loader, refresh_interval, "deployments")
        self.http = http  # providers.transport.HttpOptions, shared by every deployment
        self.config = [Deployment(entry["model_name"], self.with_defaults(entry["params"]),
                                  entry.get("model_info"), id=(entry.get("model_info") or {}).get("id"), http=http)
                       for entry in model_list]
        self.dynamic = {}
        self.groups = {}
        self.rebuild()

    def with_defaults(self, params):
        merged = dict(self.defaults)
        merged.update({k: v for k, v in params.items() if v is not None})
        return merged

    def add(self, deployment):
        """Add a deployment as if it came from the config (tests, and embedders building registries)."""
        self.config.append(deployment)
        self.rebuild()
        return deployment

    def rebuild(self):
        groups = {}
        for deployment in self.config + list(self.dynamic.values()):
            groups.setdefault(deployment.model_name, []).append(deployment)
        self.groups = groups

    # -- runtime deployments ----------------------------------------------------------------
    def refresh(self, force=False):
        """Ask the loader for the stored deployments if the last answer is older than the interval."""
        rows = self.stored.load(set(self.dynamic), force)
        if rows is None:  # not due, unchanged, or the database failed (logged)
            return
        dynamic = {}
        for row in rows:
            known = self.dynamic.get(row["id"])
            dynamic[row["id"]] = known or Deployment(row["model_name"], self.with_defaults(row["params"]),
                                                     row.get("model_info"), id=row["id"], source="db", http=self.http)
        self.dynamic = dynamic
        self.rebuild()

    # -- lookups ----------------------------------------------------------------------------
    def resolve(self, name):
        """The group name a public name stands for (`model_group_alias`)."""
        return self.aliases.get(name, name)

    def names(self):
        self.refresh()
        return list(self.groups) + [a for a in self.aliases if a not in self.groups and self.aliases[a] in self.groups]

    def has(self, name):
        self.refresh()
        return self.resolve(name) in self.groups

    def group(self, name):
        self.refresh()
        found = self.groups.get(self.resolve(name))
        if not found:
            raise ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.",
                                param="model")
        return found

    def deployments(self):
        self.refresh()
        return [d for group in self.groups.values() for d in group]

    def get(self, deployment_id):
        return next((d for d in self.deployments() if d.id == deployment_id), None)
