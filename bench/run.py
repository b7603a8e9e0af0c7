"""DeltaLLM load benchmark: one gevent worker on one core against a fast fake upstream on the other.

    python bench/run.py                      # everything, 2-3 minutes
    python bench/run.py --only nonstream     # or: capacity, nonstream, stream-c1, stream-many, stream
    python bench/run.py --profile            # also py-spy profiles of the DeltaLLM worker under load

Layout (2 cores): the server under test (DeltaLLM, or the bare Flask pass-through) runs one gunicorn
gevent worker pinned to core 0; the fake upstream, wrk and the streaming driver share core 1.
Results are printed as a table and written to bench/results/<timestamp>.json. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from procs import (Proc, RSSSampler, busy_processes, core_busy, core_times, cpu_seconds, free_port,
                   log, raise_nofile, read_status, wait_http)
from report import derive, machine_info, table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
LUA = os.path.join(HERE, "chat.lua")
KEY = "sk-bench"
TARGETS = ("direct", "bare", "deltallm")
PHASES = ("capacity", "nonstream", "ratio", "stream-c1", "stream-many")

CONFIG = """\
model_list:
  - model_name: bench
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:{fast}/v1", api_key: upstream-key}}
  - model_name: bench-slow
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:{slow}/v1", api_key: upstream-key}}
router_settings: {{routing_strategy: {strategy}}}
general_settings: {{master_key: {key}, database_url: "{db}"{redis}}}
"""


def limited_key(port):
    """A virtual key whose rate limits (rpm, tpm: a token count and reservation per request) are
    checked on every request but never reached."""
    import json
    import urllib.request
    body = json.dumps({"name": "bench", "rpm_limit": 100_000_000, "tpm_limit": 2_000_000_000}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/keys", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["key"]


# -- servers and load generators -------------------------------------------------------------------------------
class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.key = KEY  # the master key, or a rate-limited virtual key (--limited-key)
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="deltallm-bench-")
        self.urls = {}
        self.workers = {}  # target -> gunicorn worker pid (against the zero-delay upstream)
        self.slow_urls = {}  # target -> URL whose streams come from the slow (chunk-delay) upstream
        self.slow_workers = {}
        self.deltallm = None
        self.upstream_pid = None

    def pin(self, cpu):
        nice = ["nice", "-n", str(self.opts.nice)] if self.opts.nice else []
        return nice + (["taskset", "-c", str(cpu)] if cpu is not None and self.opts.pin else [])

    def spawn(self, name, cmd, cpu, env=None, cwd=None):
        proc = Proc(name, self.pin(cpu) + cmd, self.tmp, env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            proc.stop()

    def child_env(self, **extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "DELTALLM_MASTER_KEY", "PORT", "WEB_CONCURRENCY")}
        env.update(extra)
        return env

    # servers
    def start_upstream(self, name, chunk_delay_ms):
        o = self.opts
        port = free_port()
        proc = self.spawn(name, [sys.executable, os.path.join(HERE, "fake_upstream.py"), "--port", str(port),
                                 "--chunks", str(o.chunks), "--chunk-delay-ms", str(chunk_delay_ms),
                                 "--latency-ms", str(o.latency_ms)], o.load_cpu)
        wait_http(proc, port, "/health")
        return port

    def start_bare(self, name, upstream_port):
        o = self.opts
        port = free_port()
        proc = self.spawn(name, [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1",
                                 "--worker-connections", str(o.worker_connections), "--keep-alive", "75",
                                 "--no-control-socket", "--log-level", "warning",
                                 "-b", f"127.0.0.1:{port}", "bare_passthrough:app"], o.server_cpu,
                          # cwd bench/: gunicorn would otherwise pick up the repo's gunicorn.conf.py
                          env=self.child_env(BARE_UPSTREAM=f"http://127.0.0.1:{upstream_port}/v1"), cwd=HERE)
        wait_http(proc, port, "/")
        return port, proc

    def start_deltallm(self, fast, slow):
        o = self.opts
        path = os.path.join(self.tmp, "config.yaml")
        with open(path, "w") as fh:
            fh.write(CONFIG.format(fast=fast, slow=slow, key=KEY, db=os.path.join(self.tmp, "deltallm.db"),
                                   strategy=o.strategy, redis=f', redis_url: "{o.redis}"' if o.redis else ""))
        port = free_port()
        env = self.child_env(DELTALLM_WORKER_CONNECTIONS=str(o.worker_connections),
                             DELTALLM_CONFIG_PATH=path)
        if o.launcher == "serve":
            cmd = [sys.executable, "-m", "deltallm.cli", "serve", "--config", path, "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]
        else:
            cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                   "--workers", "1", "wsgi:app"]
        proc = self.spawn("deltallm", cmd, o.server_cpu, env=env, cwd=ROOT)
        wait_http(proc, port, "/health/liveliness")
        if o.limited_key:
            self.key = limited_key(port)
        return port, proc

    def start(self, phases):
        o = self.opts
        fast = self.start_upstream("upstream-fast", 0)
        self.upstream_pid = self.procs[-1].pid
        slow = self.start_upstream("upstream-slow", o.chunk_delay_ms) if "stream-many" in phases else fast
        path = "/v1/chat/completions"
        self.urls["direct"] = f"http://127.0.0.1:{fast}{path}"
        self.slow_urls["direct"] = f"http://127.0.0.1:{slow}{path}"
        if "bare" in o.targets and ({"nonstream", "ratio", "stream-c1"} & phases):
            port, proc = self.start_bare("bare", fast)
            self.urls["bare"] = f"http://127.0.0.1:{port}{path}"
            self.workers["bare"] = proc.worker_pid()
        if "bare" in o.targets and "stream-many" in phases:
            port, proc = self.start_bare("bare-slow", slow)
            self.slow_urls["bare"] = f"http://127.0.0.1:{port}{path}"
            self.slow_workers["bare"] = proc.worker_pid()
        if "deltallm" in o.targets and phases - {"capacity"}:
            port, proc = self.start_deltallm(fast, slow)
            self.deltallm = proc
            self.urls["deltallm"] = f"http://127.0.0.1:{port}{path}"
            self.slow_urls["deltallm"] = self.urls["deltallm"]
            self.workers["deltallm"] = self.slow_workers["deltallm"] = proc.worker_pid()

    # load
    def wrk(self, url, conns, duration, cpu=None, model="bench"):
        cmd = self.pin(self.opts.load_cpu if cpu is None else cpu) + [
            "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "10s", "-s", LUA, url]
        env = dict(os.environ, BENCH_MODEL=model, BENCH_KEY=self.key)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        for line in out.stdout.splitlines():
            if line.startswith("WRK_JSON "):
                res = json.loads(line[len("WRK_JSON "):])
                res["errors"] = sum(v for k, v in res.items() if k.startswith("err_"))
                res["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                return res
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")

    def streams(self, url, model, streams, concurrency, ramp_s=0.0):
        cmd = self.pin(self.opts.load_cpu) + [
            sys.executable, os.path.join(HERE, "stream_client.py"), "--url", url, "--key", self.key,
            "--model", model, "--streams", str(streams), "--concurrency", str(concurrency),
            "--ramp-s", str(ramp_s), "--expect-chunks", str(self.opts.chunks)]
        timeout = 120 + streams * (self.opts.chunks * self.opts.chunk_delay_ms / 1000.0) / max(1, concurrency)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = out.stdout.strip().splitlines()
        if not lines:
            raise RuntimeError(f"stream driver failed: {out.stderr[-800:]}")
        return json.loads(lines[-1])

    def profile(self, pid, seconds, load, name, rate=250):
        """py-spy (folded stacks) of `pid` while `load()` runs; returns the file path or None.

        Blocking sampling gives consistent stacks (--nonblocking gives torn ones). It stops every
        thread per sample, and after a connection storm the worker has gevent's resolver threads too,
        so the stream profile samples at a lower rate to keep the run close to an unprofiled one.
        """
        spy = shutil.which("py-spy")
        if not spy:
            log("py-spy not found (pip install py-spy): profile skipped")
            return None
        os.makedirs(RESULTS, exist_ok=True)
        path = os.path.join(RESULTS, f"profile-{self.stamp}-{name}.txt")
        cmd = [spy, "record", "--pid", str(pid), "-d", str(seconds), "-r", str(rate), "--format", "raw", "-o", path]
        spy_proc = subprocess.Popen(self.pin(self.opts.load_cpu) + cmd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        time.sleep(1.0)
        load()
        _, err = spy_proc.communicate(timeout=seconds + 60)
        if spy_proc.returncode != 0 or not os.path.exists(path):
            log(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
            return None
        summary = subprocess.run([sys.executable, os.path.join(HERE, "profile_summary.py"), path, "--top", "25"],
                                 capture_output=True, text=True).stdout
        with open(path.replace(".txt", "-summary.txt"), "w") as fh:
            fh.write(summary)
        log(f"profile written: {path} (summary: {path.replace('.txt', '-summary.txt')})")
        print(summary.split("\n\nself")[0][:2500], flush=True)
        return path


# -- phases ----------------------------------------------------------------------------------------
def run_capacity(b, res):
    """The fake upstream alone: wrk on the otherwise idle server core, upstream on its own core."""
    o = b.opts
    url = b.urls["direct"]
    b.wrk(url, 50, 1, cpu=o.server_cpu)
    r = b.wrk(url, 50, max(3, o.duration // 2), cpu=o.server_cpu)
    res["upstream_capacity"] = {"rps": r["rps"], "p50_ms": r["lat_p50_us"] / 1000, "errors": r["errors"],
                                "note": "wrk -t1 -c50 on the server core, fake upstream alone on the load core"}
    log(f"fake upstream capacity: {r['rps']:.0f} req/s (one core)")


def run_nonstream(b, res):
    o = b.opts
    out = res.setdefault("nonstream", {})
    for target in o.targets:
        for conns in o.concurrency:
            url = b.urls[target]
            b.wrk(url, conns, o.warmup)
            worker = b.workers.get(target)
            cpu0 = cpu_seconds(worker) if worker else 0.0
            up0 = cpu_seconds(b.upstream_pid)
            cores0 = core_times()
            r = b.wrk(url, conns, o.duration)
            busy = core_busy(cores0, core_times())
            seconds = r["duration_us"] / 1e6
            r["core_busy_pct"] = busy
            r["worker_cpu_pct"] = 100.0 * (cpu_seconds(worker) - cpu0) / seconds if worker else None
            r["upstream_cpu_pct"] = 100.0 * (cpu_seconds(b.upstream_pid) - up0) / seconds
            r["wrk_cpu_pct"] = 100.0 * r["wrk_cpu_s"] / seconds
            # CPU that none of the benchmark's processes used (other processes, interrupts): noise.
            r["other_cpu_pct"] = round(sum(busy.values()) - (r["worker_cpu_pct"] or 0.0)
                                       - r["upstream_cpu_pct"] - r["wrk_cpu_pct"], 1)
            out.setdefault(target, {})[f"c{conns}"] = r
            extra = (f"  worker CPU {r['worker_cpu_pct']:.0f}%" if worker else "") + \
                f"  other load {r['other_cpu_pct']:.0f}%"
            log(f"{target:9s} c={conns:<3d} {r['rps']:8.0f} req/s  p50 {r['lat_p50_us'] / 1000:7.2f} ms  "
                f"p99 {r['lat_p99_us'] / 1000:7.2f} ms  errors {r['errors']}{extra}")
    if o.profile and "deltallm" in b.urls:
        for conns in o.concurrency:
            b.profile(b.workers["deltallm"], o.duration,
                      lambda c=conns: b.wrk(b.urls["deltallm"], c, o.duration), f"nonstream-c{conns}")


def run_ratio(b, res):
    """bare and DeltaLLM in alternation at one concurrency: `--rounds` pairs of short wrk runs. On a
    box where other work comes and goes, a disturbance then hits both targets instead of one; the
    median of the per-pair ratios is the figure to quote. Also the worker's CPU time per request."""
    o = b.opts
    conns = max(o.concurrency)
    pairs = []
    for target in ("bare", "deltallm"):
        b.wrk(b.urls[target], conns, o.warmup)
    for i in range(o.rounds):
        pair = {}
        for target in (("bare", "deltallm") if i % 2 == 0 else ("deltallm", "bare")):
            worker = b.workers[target]
            cpu0 = cpu_seconds(worker)
            r = b.wrk(b.urls[target], conns, o.round_s)
            requests = r["rps"] * r["duration_us"] / 1e6
            pair[target] = {"rps": r["rps"], "errors": r["errors"],
                            "cpu_us_per_request": 1e6 * (cpu_seconds(worker) - cpu0) / max(1.0, requests)}
        pair["ratio"] = pair["deltallm"]["rps"] / pair["bare"]["rps"]
        pairs.append(pair)
        log(f"round {i + 1}/{o.rounds} c={conns}: bare {pair['bare']['rps']:.0f} req/s "
            f"({pair['bare']['cpu_us_per_request']:.0f} us CPU/req), DeltaLLM {pair['deltallm']['rps']:.0f} "
            f"req/s ({pair['deltallm']['cpu_us_per_request']:.0f} us CPU/req): ratio {pair['ratio']:.3f}")
    ratios = sorted(p["ratio"] for p in pairs)
    median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
    cpu = {t: sorted(p[t]["cpu_us_per_request"] for p in pairs)[len(pairs) // 2] for t in ("bare", "deltallm")}
    res["ratio"] = {"concurrency": conns, "pairs": pairs, "median_ratio": median,
                    "median_cpu_us_per_request": cpu}
    log(f"DeltaLLM / bare at c={conns}: median {median:.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}); "
        f"CPU per request, median: bare {cpu['bare']:.0f} us, DeltaLLM {cpu['deltallm']:.0f} us")


def run_stream_c1(b, res):
    o = b.opts
    out = res.setdefault("stream_c1", {})
    for target in o.targets:
        b.streams(b.urls[target], "bench", 30, 1)
        r = b.streams(b.urls[target], "bench", o.c1_streams, 1)
        out[target] = r
        t = r["ttft_ms"]
        log(f"{target:9s} stream c=1 TTFT p50 {t.get('p50', 0):7.2f} ms  p99 {t.get('p99', 0):7.2f} ms  "
            f"ok {r['ok']}/{r['streams']}")


def run_stream_many(b, res):
    o = b.opts
    out = res.setdefault("stream_many", {})
    for target in o.targets:
        url = b.slow_urls[target]
        worker = b.slow_workers.get(target)
        b.streams(url, "bench-slow", 20, 20)  # warm the pools and code paths
        before = read_status(worker) if worker else {}
        cpu0 = cpu_seconds(worker) if worker else None
        if worker:
            with RSSSampler(worker) as sampler:
                r = b.streams(url, "bench-slow", o.streams, o.streams, o.ramp_s)
            after = read_status(worker)
            r["worker_rss_mb"] = {"before": before.get("VmRSS"), "peak_sampled": sampler.peak,
                                  "VmHWM": after.get("VmHWM"), "after": after.get("VmRSS")}
            r["worker_cpu_pct"] = 100.0 * (cpu_seconds(worker) - cpu0) / r["wall_s"]
        else:
            r = b.streams(url, "bench-slow", o.streams, o.streams, o.ramp_s)
        out[target] = r
        t = r["ttft_ms"]
        rss = r.get("worker_rss_mb", {})
        log(f"{target:9s} {r['streams']} streams: ok {r['ok']} errors {r['errors']} incomplete "
            f"{r['incomplete']} peak open {r['peak_open']}  TTFT p50 {t.get('p50', 0):.2f} ms "
            f"p99 {t.get('p99', 0):.2f} ms" + (f"  worker RSS peak {max(rss.get('VmHWM') or 0, rss.get('peak_sampled') or 0):.0f} MB" if rss else ""))
        if r["error_samples"]:
            log(f"          samples: {r['error_samples']}")
    if o.profile and "deltallm" in b.slow_urls:
        seconds = int(o.ramp_s + o.chunks * o.chunk_delay_ms / 1000.0) + 1
        b.profile(b.slow_workers["deltallm"], seconds,
                  lambda: b.streams(b.slow_urls["deltallm"], "bench-slow", o.streams, o.streams, o.ramp_s),
                  f"stream-{o.streams}", rate=50)


# -- report ----------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="DeltaLLM load benchmark (see bench/README.md)")
    p.add_argument("--only", default=",".join(PHASES),
                   help="comma list of phases: capacity, nonstream, stream-c1, stream-many (or 'stream' for both)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list of: direct, bare, deltallm")
    p.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up before each measured run")
    p.add_argument("--concurrency", default="1,50", help="wrk connection counts")
    p.add_argument("--rounds", type=int, default=6, help="bare/DeltaLLM pairs in the ratio phase")
    p.add_argument("--round-s", type=int, default=5, help="seconds per wrk run in the ratio phase")
    p.add_argument("--streams", type=int, default=1000, help="concurrent streams in the stream-many phase")
    p.add_argument("--ramp-s", type=float, default=2.0, help="spread the stream starts over this many seconds")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    p.add_argument("--chunk-delay-ms", type=float, default=250.0, help="inter-chunk delay in stream-many")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fake upstream latency before answering")
    p.add_argument("--c1-streams", type=int, default=300, help="sequential streams for the c=1 TTFT")
    p.add_argument("--launcher", choices=("serve", "gunicorn"), default="serve",
                   help="`deltallm serve` or `gunicorn -c gunicorn.conf.py wsgi:app`")
    p.add_argument("--worker-connections", type=int, default=0,
                   help="gunicorn worker_connections (default: max(2000, streams + 100))")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-pin", dest="pin", action="store_false", help="do not use taskset")
    p.add_argument("--nice", type=int, default=0,
                   help="run every benchmark process under `nice -n N` (e.g. -10 as root on a shared box)")
    p.add_argument("--strategy", default="simple-shuffle", help="DeltaLLM's router_settings.routing_strategy")
    p.add_argument("--redis", help="DeltaLLM's general_settings.redis_url (router state shared through Redis)")
    p.add_argument("--limited-key", action="store_true",
                   help="send DeltaLLM a virtual key with rpm/tpm limits (never reached) instead of "
                        "the master key, so every request goes through the limiter (with --redis: over Redis)")
    p.add_argument("--profile", action="store_true", help="py-spy the DeltaLLM worker in extra runs")
    p.add_argument("--out", help="JSON path (default: bench/results/<timestamp>.json)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temporary folder with server logs")
    opts = p.parse_args(argv)
    phases = set()
    for name in opts.only.split(","):
        name = name.strip()
        if name == "stream":
            phases |= {"stream-c1", "stream-many"}
        elif name in PHASES:
            phases.add(name)
        elif name:
            p.error(f"unknown phase {name!r}")
    opts.phases = phases
    opts.targets = [t for t in TARGETS if t in {x.strip() for x in opts.targets.split(",")}]
    if "direct" not in opts.targets:
        opts.targets.insert(0, "direct")  # the baseline every 'added' number needs
    opts.concurrency = [int(c) for c in opts.concurrency.split(",") if c.strip()]
    opts.worker_connections = opts.worker_connections or max(2000, opts.streams + 100)
    return opts


def main(argv=None):
    opts = parse_args(argv)
    for tool in ("wrk",) + (("taskset",) if opts.pin else ()):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found on PATH")
    if opts.pin and (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 CPUs: pinning disabled")
        opts.pin = False
    raise_nofile(3 * opts.streams + 200)
    busy = busy_processes()
    if busy:
        log("warning: other processes are busy; numbers will be noisy: " + "; ".join(busy))
    b = Bench(opts)
    b.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "machine": machine_info(), "busy_at_start": busy,
           "settings": {k: v for k, v in vars(opts).items() if k != "phases"} | {"phases": sorted(opts.phases)}}
    started = time.monotonic()
    try:
        b.start(opts.phases)
        log(f"servers up ({', '.join(f'{p.name}={p.pid}' for p in b.procs)}); logs in {b.tmp}")
        for phase, func in (("capacity", run_capacity), ("nonstream", run_nonstream), ("ratio", run_ratio),
                            ("stream-c1", run_stream_c1), ("stream-many", run_stream_many)):
            if phase in opts.phases:
                log(f"phase {phase}")
                func(b, res)
        for proc in b.procs:
            if not proc.alive():
                log(f"warning: {proc.name} died:\n{proc.tail()}")
        if b.deltallm is not None:
            tail = b.deltallm.tail(400)
            res["deltallm_log_errors"] = sum(1 for l in tail.splitlines() if "Traceback" in l or "ERROR" in l)
            if res["deltallm_log_errors"]:
                log(f"warning: DeltaLLM logged {res['deltallm_log_errors']} errors:\n{b.deltallm.tail(30)}")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        b.stop_all()
        if not opts.keep_logs:
            shutil.rmtree(b.tmp, ignore_errors=True)
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    res["machine"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    derive(res)
    print()
    print(table(res, opts.targets))
    path = opts.out or os.path.join(RESULTS, f"{b.stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)
    log(f"results: {path} ({res['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
