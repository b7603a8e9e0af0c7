"""Per-request cost of governance: limiter acquire+finish (in process and over Redis), prompt token
counting, price lookup, and queueing a usage record. Run: python bench/governance_overhead.py [REDIS_URL]"""
import statistics
import sys
import time
import uuid

from deltallm.governance import prices, tokens
from deltallm.governance.limits import Limiter, Policy
from deltallm.governance.usage import UsageWriter, make_record

BODY = {"model": "gpt-4o-mini", "max_tokens": 256, "messages": [
    {"role": "system", "content": "You are a concise assistant that answers questions about cooking."},
    {"role": "user", "content": "How long should I boil an egg for a runny yolk? " * 8},
    {"role": "assistant", "content": "About six minutes from boiling water, then cool it in ice water."},
    {"role": "user", "content": "And for a firm one? Please also explain why the timing differs."}]}


def per_call_us(fn, n):
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


def limiter_bench(limiter, n):
    policy = Policy(f"bench-{uuid.uuid4().hex[:6]}", rpm=10**9, tpm=10**12, parallel=10**6,
                    model_rpm={"gpt-4o-mini": 10**9}, max_budget=10**9, budget_duration="1d")
    price = prices.price_for("openai/gpt-4o-mini")

    def one(_):
        grant = limiter.acquire(policy, "gpt-4o-mini", tokens=300, cost=prices.estimate(price, 44, 256))
        grant.finish(tokens=320, cost=prices.cost(price, {"prompt_tokens": 44, "completion_tokens": 20}))
    return per_call_us(one, n)


def main():
    tokens.warm()
    print(f"prompt tokens of a typical chat body ({tokens.count_prompt(BODY)} tokens): "
          f"{per_call_us(lambda i: tokens.count_prompt(BODY), 2000):.1f} us")
    price = prices.price_for("openai/gpt-4o-mini")
    lookup = per_call_us(lambda i: prices.price_for("openai/gpt-4o-mini"), 2000)
    usage = {"prompt_tokens": 44, "completion_tokens": 20}
    print(f"price_for (once per deployment): {lookup:.1f} us; "
          f"cost(): {per_call_us(lambda i: prices.cost(price, usage), 20000):.2f} us")
    writer = UsageWriter(max_queue=10**7, interval=3600)
    writer._ensure_started = lambda: None       # measure the request-path part only: build + enqueue
    print("usage record (build + enqueue): %.2f us" % per_call_us(lambda i: writer.record(make_record(
        key_id="k", model="gpt-4o-mini", deployment="d", endpoint="/v1/chat/completions", status=200,
        usage={"prompt_tokens": 44, "completion_tokens": 20}, spend=0.0001, latency_ms=100)), 20000))
    print(f"limiter acquire+finish, in process (all limits set): {limiter_bench(Limiter(None), 2000):.1f} us")
    if len(sys.argv) > 1:
        import redis
        client = redis.Redis.from_url(sys.argv[1])
        prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        try:
            print(f"limiter acquire+finish, Redis (2 round trips, all limits set): "
                  f"{limiter_bench(Limiter(client, prefix=prefix), 500):.1f} us")
        finally:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)


if __name__ == "__main__":
    main()
