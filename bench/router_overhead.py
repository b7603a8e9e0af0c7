"""Router overhead per request (choice + bookkeeping), in microseconds, without and with Redis.

python bench/router_overhead.py [--redis redis://127.0.0.1:6379/15] [--n 20000]

The operation is a no-op, so what is timed is Router.run itself: the group lookup, the state read,
the strategy's choice and the in-flight/latency/usage bookkeeping. With Redis the state is traded by
a background loop, so the request path itself never waits on Redis.
"""
import argparse
import statistics
import time
import uuid

from deltallm.providers.base import Call
from deltallm.router.policy import Policy
from deltallm.router.registry import ModelRegistry
from deltallm.router.router import Router
from deltallm.state import make_state

STRATEGIES = ("simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing")


def measure(strategy, redis, n):
    entries = [{"model_name": "g", "params": {"model": f"mock/m{i}", "rpm": 10**9}, "model_info": {"id": f"d{i}"}}
               for i in range(3)]
    prefix = f"deltallm-bench:{uuid.uuid4().hex[:8]}:"
    state = make_state(redis, prefix=prefix) if redis is not None else make_state()
    router = Router(ModelRegistry(entries), Policy({"routing_strategy": strategy}, {}, entries), state)
    answer = {"usage": {"total_tokens": 10}}
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n // 5):
            router.run(Call("r"), "g", lambda d: answer)
        samples.append((time.perf_counter() - started) / (n // 5) * 1e6)
    if redis is not None:
        for key in redis.scan_iter(prefix + "*"):
            redis.delete(key)
    return statistics.median(samples)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    p.add_argument("--n", type=int, default=20000)
    o = p.parse_args()
    import redis as redis_lib
    client = redis_lib.Redis.from_url(o.redis) if o.redis else None
    print(f"{'strategy':<24}{'in process, µs':>16}{'with Redis, µs':>16}")
    for strategy in STRATEGIES:
        local = measure(strategy, None, o.n)
        shared = measure(strategy, client, o.n) if client is not None else float("nan")
        print(f"{strategy:<24}{local:>16.1f}{shared:>16.1f}")


if __name__ == "__main__":
    main()
