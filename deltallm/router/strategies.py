"""Routing strategies: pure choices among a group's available deployments, given their Stats."""
import random

STRATEGIES = ("simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing")
# Latency routing sends this share of requests to a random deployment, so a slow one that got
# faster (or a new one) is measured again instead of being starved forever.
EXPLORE = 0.1


def weight(deployment):
    """`weight`, else the deployment's `rpm`, else its `tpm`, else 1."""
    params = deployment.params
    for key in ("weight", "rpm", "tpm"):
        value = params.get(key)
        if value:
            return float(value)
    return 1.0


def shuffle(candidates, rng):
    if len(candidates) == 1:
        return candidates[0]
    return rng.choices(candidates, weights=[weight(d) for d in candidates])[0]


def at_capacity(deployment, stats):
    """True when this minute's requests or tokens reached the deployment's `rpm` / `tpm`."""
    rpm, tpm = deployment.params.get("rpm"), deployment.params.get("tpm")
    return bool((rpm and stats.requests >= rpm) or (tpm and stats.tokens >= tpm))


def usage_share(deployment, stats):
    rpm, tpm = deployment.params.get("rpm"), deployment.params.get("tpm")
    shares = [stats.requests / rpm if rpm else 0.0, stats.tokens / tpm if tpm else 0.0]
    return max(shares), stats.tokens


def lowest(candidates, key, rng):
    best = min(key(d) for d in candidates)
    return shuffle([d for d in candidates if key(d) == best], rng)


def choose(strategy, candidates, stats, rng=random):
    """One deployment of `candidates` (non-empty, none cooling), or None when usage-based routing finds
    every one at its rpm/tpm."""
    if strategy == "least-busy":
        return lowest(candidates, lambda d: stats[d.id].in_flight, rng)
    if strategy == "latency-based-routing":
        unmeasured = [d for d in candidates if not stats[d.id].samples]
        if unmeasured:
            return shuffle(unmeasured, rng)
        if len(candidates) > 1 and rng.random() < EXPLORE:
            return rng.choice(candidates)
        return lowest(candidates, lambda d: stats[d.id].latency, rng)
    if strategy == "usage-based-routing":
        room = [d for d in candidates if not at_capacity(d, stats[d.id])]
        if not room:
            return None
        return lowest(room, lambda d: usage_share(d, stats[d.id]), rng)
    return shuffle(candidates, rng)
