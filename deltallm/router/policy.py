"""Routing policy read once from the config: strategies per group, retries, cooldowns, fallback chains."""
from deltallm.router.strategies import STRATEGIES

FALLBACK_KINDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def fallback_map(*sources):
    """`[{group: [fallback, ...]}, ...]` lists (router_settings first, then deltallm_settings) -> dict."""
    merged = {}
    for entries in sources:
        for entry in entries or ():
            for group, chain in entry.items():
                merged.setdefault(group, [])
                merged[group] += [name for name in ([chain] if isinstance(chain, str) else chain)
                                  if name not in merged[group]]
    return merged


class Policy:
    def __init__(self, router_settings=None, deltallm_settings=None, model_list=()):
        rs, ds = dict(router_settings or {}), dict(deltallm_settings or {})
        self.strategy = rs.get("routing_strategy") or "simple-shuffle"
        self.group_strategy = dict(rs.get("model_group_strategy") or {})
        for entry in model_list:  # a group's strategy may also sit in any of its entries' model_info
            chosen = (entry.get("model_info") or {}).get("routing_strategy")
            if chosen:
                self.group_strategy.setdefault(entry["model_name"], chosen)
        self.num_retries = int(rs.get("num_retries", 2))
        self.allowed_fails = int(rs.get("allowed_fails", 3))
        self.cooldown_time = float(rs.get("cooldown_time", 60))
        self.retry_after = float(rs.get("retry_after") or 0)
        self.timeout = float(rs.get("timeout") or 600)
        self.chains = {kind: fallback_map(rs.get(kind), ds.get(kind)) for kind in FALLBACK_KINDS}

    def strategy_for(self, group):
        chosen = self.group_strategy.get(group, self.strategy)
        return chosen if chosen in STRATEGIES else self.strategy

    def fallbacks_for(self, group, kind, requested=None):
        """The fallback groups to try after `group` failed with an error of `kind`.

        `requested` (a request's own `fallbacks`) replaces the configured generic chain; a context-length
        or content-policy refusal uses its own chain when one is configured for the group."""
        generic = list(requested) if requested is not None else self.chains["fallbacks"].get(group, [])
        if kind in ("context_window", "content_policy"):
            specific = self.chains[f"{kind}_fallbacks"].get(group)
            if specific:
                return specific
        return generic
