"""A deployment: one upstream model behind a public model name, with its lazily built adapter."""
import hashlib
import re

import orjson

from deltallm.providers import provider_class


def is_secret(name):
    """Parameters that carry credentials: never shown, never part of an id, stored encrypted.
    `extra_headers` counts as one: it may carry an Authorization header (Azure Entra ID tokens)."""
    return "key" in name or "secret" in name or "token" in name or name == "extra_headers"


def secret_values(params):
    """Every credential string in a deployment's params (header values included), to mask in errors."""
    values = []
    for name, value in params.items():
        if name == "extra_headers" and isinstance(value, dict):
            values += [v for v in value.values() if isinstance(v, str)]
        elif is_secret(name) and isinstance(value, str):
            values.append(value)
    proxy = params.get("proxy")
    if isinstance(proxy, str) and "@" in proxy:
        values.append(proxy.split("://", 1)[-1].rsplit("@", 1)[0])  # user:password
    return [v for v in values if len(v) >= 6]


def shown_params(params):
    """A deployment's params as the admin API shows them: no credentials, a proxy without its password."""
    shown = {k: v for k, v in params.items() if not is_secret(k)}
    if isinstance(shown.get("proxy"), str):
        shown["proxy"] = re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", shown["proxy"])
    if params.get("extra_headers"):
        shown["extra_headers"] = {name: "***" for name in params["extra_headers"]}
    return shown


class Deployment:
    """Built from one `model_list` entry (or an admin-registered model)."""

    def __init__(self, model_name, params, model_info=None, id=None, source="config", http=None):
        self.model_name = model_name
        self.params = dict(params)
        self.model_info = dict(model_info or {})
        self.source = source
        full = self.params["model"]
        self.provider, _, self.model = full.partition("/")
        if not self.model:  # bare model names are OpenAI's
            self.provider, self.model = "openai", full
        self.weight = float(self.params.get("weight") or 1)
        self.timeout = float(self.params.get("timeout") or 600)
        self.http = http  # gateway-wide upstream options (proxies, CA bundle, event bound); None: defaults
        self.id = id or self.derive_id()
        self._adapter = None
        self._price = None

    def derive_id(self):
        """Stable across restarts and workers: a digest of the entry minus secrets."""
        public = {k: v for k, v in self.params.items() if not is_secret(k)}
        digest = hashlib.sha256(orjson.dumps([self.model_name, public], option=orjson.OPT_SORT_KEYS))
        return "dep_" + digest.hexdigest()[:12]

    @property
    def price(self):
        """Its per-token prices: the bundled table's for its model, overridden by model_info."""
        if self._price is None:
            from deltallm.governance.prices import price_for
            self._price = price_for(self.params["model"], self.model_info)
        return self._price

    @property
    def adapter(self):
        if self._adapter is None:
            self._adapter = provider_class(self.provider)(self)
        return self._adapter

    def public(self):
        """What the admin API may show: never credentials."""
        params = {k: ("***" if is_secret(k) and v else v) for k, v in self.params.items()}
        if isinstance(params.get("proxy"), str):  # a proxy URL may carry a password
            params["proxy"] = re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", params["proxy"])
        return {"id": self.id, "model_name": self.model_name, "deltallm_params": params,
                "model_info": self.model_info, "source": self.source}
