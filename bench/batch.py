"""Batch throughput: embeddings and chat batches through `deltallm worker` against the fake upstream.

    python bench/batch.py [--embeddings 10000] [--chat 2000] [--latency-ms 20] [--concurrency 16 64]
                          [--workers 1 2] [--rss-mb 50]

Starts its own redis-server, fake upstream (bench/fake_upstream.py, --latency-ms per answer) and
`deltallm worker` processes on a SQLite database in a temporary folder; batches are created through
the API in this process (Flask's test client: the web side is not what is measured). For each worker
count W and concurrency it runs W batches at once (one job each) and reports lines/s (from the first
in_progress_at to the last completion) and the workers' peak RSS; --rss-mb also runs one embeddings batch of about that many MB of input and reports
the worker's peak RSS above its idle RSS. Targets (issue 9): >= 500 lines/s at concurrency 16, < 100 MB
above idle for a 50 MB input.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import orjson
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [HERE, ROOT]

from procs import Proc, RSSSampler, free_port, log, read_status, wait_http  # noqa: E402

MASTER = "sk-bench-master"


def config(upstream, database, redis_url, concurrency):
    return {"model_list": [
        {"model_name": "gpt-4o-mini", "deltallm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream,
                                                          "api_key": "k"}},
        {"model_name": "text-embedding-3-small", "deltallm_params": {"model": "openai/text-embedding-3-small",
                                                                     "api_base": upstream, "api_key": "k"}}],
        "general_settings": {"master_key": MASTER, "database_url": database, "redis_url": redis_url,
                             "embeddings_batch_enabled": True, "batch_concurrency": concurrency}}


def jsonl(kind, n, pad=0):
    text = "x" * pad
    for i in range(n):
        if kind == "embeddings":
            body = {"model": "text-embedding-3-small", "input": f"line {i} {text}"}
            url = "/v1/embeddings"
        else:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"line {i} {text}"}]}
            url = "/v1/chat/completions"
        yield orjson.dumps({"custom_id": f"{kind}-{i}", "method": "POST", "url": url, "body": body}) + b"\n"


def run_batch(client, kind, n, pad=0, timeout=3600, batches=1):
    """`batches` batches of `n` lines each, created together; lines/s over all of them, from the first
    one's in_progress_at to the last one's completed_at."""
    import io
    content = b"".join(jsonl(kind, n, pad))
    auth = {"Authorization": f"Bearer {MASTER}"}
    endpoint = "/v1/embeddings" if kind == "embeddings" else "/v1/chat/completions"
    ids = []
    for _ in range(batches):
        file_id = client.post("/v1/files", headers=auth, content_type="multipart/form-data",
                              data={"purpose": "batch", "file": (io.BytesIO(content), "in.jsonl")}).get_json()["id"]
        ids.append(client.post("/v1/batches", headers=auth,
                               json={"input_file_id": file_id, "endpoint": endpoint}).get_json()["id"])
    deadline = time.monotonic() + timeout
    done = {}
    while time.monotonic() < deadline and len(done) < len(ids):
        for batch_id in ids:
            if batch_id not in done:
                batch = client.get(f"/v1/batches/{batch_id}", headers=auth).get_json()
                if batch["status"] in ("completed", "failed", "cancelled", "expired"):
                    done[batch_id] = batch
        time.sleep(0.2)
    for batch in done.values():
        if batch["status"] != "completed":
            raise RuntimeError(f"batch ended {batch['status']}: {str(batch)[:2000]}")
    if len(done) < len(ids):
        raise RuntimeError("batches did not finish in time")
    # whole seconds from the API; good enough for batches of several seconds
    seconds = max(1, max(b["completed_at"] for b in done.values()) - min(b["in_progress_at"] for b in done.values()))
    return {"kind": kind, "batches": batches, "lines": n * batches, "input_mb": round(len(content) / 2**20, 1),
            "seconds": seconds, "lines_per_s": round(n * batches / seconds, 1),
            "failed": sum(b["request_counts"]["failed"] for b in done.values())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embeddings", type=int, default=10_000)
    p.add_argument("--chat", type=int, default=2_000)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rss-mb", type=float, default=50.0, help="input size of the RSS run (0: skip it)")
    opts = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="deltallm-batch-bench-")
    up_port, redis_port = free_port(), free_port()
    upstream = Proc("upstream", [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(up_port),
                                 "--latency-ms", str(opts.latency_ms)], tmp)
    redis = Proc("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], tmp)
    results = []
    try:
        wait_http(upstream, up_port, "/health")
        time.sleep(0.5)
        for workers in opts.workers:
            for concurrency in opts.concurrency:
                results += scenario(opts, tmp, up_port, redis_port, workers, concurrency)
        if opts.rss_mb:
            results += rss_run(opts, tmp, up_port, redis_port)
    finally:
        upstream.stop()
        redis.stop()
    print(json.dumps(results, indent=2))
    return 0


def start(opts, tmp, up_port, redis_port, workers, concurrency, name):
    from deltallm import create_app, models
    path = os.path.join(tmp, f"{name}.yaml")
    cfg = config(f"http://127.0.0.1:{up_port}/v1", os.path.join(tmp, f"{name}.db"),
                 f"redis://127.0.0.1:{redis_port}/0", concurrency)
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["PYTHONPATH"] = ROOT
    procs = [Proc(f"{name}-worker{i}", [sys.executable, "-m", "deltallm.cli", "worker", "--config", path],
                  tmp, env=env, cwd=ROOT) for i in range(workers)]
    app = create_app(cfg)
    models.migrate()
    time.sleep(2)  # the workers migrate and start listening
    return app.test_client(), procs


def scenario(opts, tmp, up_port, redis_port, workers, concurrency):
    name = f"w{workers}-c{concurrency}"
    client, procs = start(opts, tmp, up_port, redis_port, workers, concurrency, name)
    out = []
    try:
        samplers = [RSSSampler(proc.pid) for proc in procs]
        for sampler in samplers:
            sampler.start()
        for kind, n in (("embeddings", opts.embeddings), ("chat", opts.chat)):
            if n:
                # one job per batch: W workers are measured with W batches at once
                row = run_batch(client, kind, n, batches=workers)
                row.update(workers=workers, concurrency=concurrency)
                log(f"{name}: {row}")
                out.append(row)
        for sampler in samplers:
            sampler.stop_event.set()
        for row in out:
            row["peak_rss_mb"] = round(max(s.peak for s in samplers), 1)
    finally:
        for proc in procs:
            proc.stop()
    return out


def rss_run(opts, tmp, up_port, redis_port):
    client, procs = start(opts, tmp, up_port, redis_port, 1, 64, "rss")
    try:
        idle = read_status(procs[0].pid)["VmRSS"]
        pad = 2000  # ~2 KB lines: a 50 MB file stays under OpenAI's (and our) 50,000 lines a batch
        n = int(opts.rss_mb * 2**20 / (pad + 130))
        with RSSSampler(procs[0].pid) as sampler:
            row = run_batch(client, "embeddings", n, pad=pad)
        row.update(workers=1, concurrency=64, idle_rss_mb=round(idle, 1), peak_rss_mb=round(sampler.peak, 1),
                   above_idle_mb=round(sampler.peak - idle, 1))
        log(f"rss: {row}")
        return [row]
    finally:
        for proc in procs:
            proc.stop()


if __name__ == "__main__":
    sys.exit(main())
