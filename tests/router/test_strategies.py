"""Routing strategies, table-driven over deployments and their Stats (no HTTP, no clock)."""
import collections
import random

import pytest

from deltallm.router.deployment import Deployment
from deltallm.router.strategies import choose
from deltallm.state import Stats


def dep(name, **params):
    return Deployment("group", {"model": f"mock/{name}", **params}, id=name)


def picks(strategy, deployments, stats, n=2000, seed=7):
    rng = random.Random(seed)
    return collections.Counter(choose(strategy, deployments, stats, rng).id for _ in range(n))


def test_simple_shuffle_follows_weights_else_rpm_else_tpm():
    a, b = dep("a", weight=3), dep("b", weight=1)
    counts = picks("simple-shuffle", [a, b], {})
    assert 0.7 < counts["a"] / 2000 < 0.8
    a, b = dep("a", rpm=900), dep("b", rpm=100)
    assert picks("simple-shuffle", [a, b], {})["a"] > 1700
    a, b = dep("a", tpm=100), dep("b", tpm=100_000)
    assert picks("simple-shuffle", [a, b], {})["b"] > 1950


def test_least_busy_picks_the_fewest_in_flight():
    a, b, c = dep("a"), dep("b"), dep("c")
    stats = {"a": Stats(in_flight=3), "b": Stats(in_flight=1), "c": Stats(in_flight=2)}
    assert picks("least-busy", [a, b, c], stats) == {"b": 2000}
    stats["c"].in_flight = 1
    assert set(picks("least-busy", [a, b, c], stats)) == {"b", "c"}


def test_latency_based_tries_unmeasured_first_then_the_fastest_with_some_exploration():
    a, b = dep("a"), dep("b")
    stats = {"a": Stats(latency=0.2, samples=5), "b": Stats()}
    assert picks("latency-based-routing", [a, b], stats) == {"b": 2000}
    stats["b"] = Stats(latency=0.9, samples=5)
    counts = picks("latency-based-routing", [a, b], stats)
    assert 0.9 < counts["a"] / 2000 < 0.99 and counts["b"] > 0  # the slow one is still measured


def test_usage_based_picks_the_lowest_share_and_skips_full_deployments():
    a, b = dep("a", rpm=10), dep("b", rpm=100)
    stats = {"a": Stats(requests=5), "b": Stats(requests=20)}  # 50 % vs 20 %
    assert picks("usage-based-routing", [a, b], stats) == {"b": 2000}
    a, b = dep("a", tpm=1000), dep("b", tpm=1000)
    stats = {"a": Stats(tokens=1000), "b": Stats(tokens=999)}
    assert picks("usage-based-routing", [a, b], stats) == {"b": 2000}
    stats["b"].tokens = 1000
    assert choose("usage-based-routing", [a, b], stats) is None


@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy", "latency-based-routing",
                                      "usage-based-routing"])
def test_a_single_candidate_is_chosen(strategy):
    only = dep("only")
    assert choose(strategy, [only], {"only": Stats()}) is only
