"""Benchmark results: added latency vs direct, the goal checks, the printed table, machine facts."""
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The goals from the issue, checked against the DeltaLLM column.
GOALS = {"added_p50_ms": 2.0, "added_p99_ms": 5.0, "rps_c50": 800.0, "stream_rss_mb": 300.0}


def derive(res):
    """Added latency vs direct, and the goal checks for DeltaLLM."""
    ns, c1, many = res.get("nonstream", {}), res.get("stream_c1", {}), res.get("stream_many", {})
    added = {}
    for target in ("bare", "deltallm"):
        row = {}
        if target in ns and "direct" in ns and "c1" in ns[target] and "c1" in ns["direct"]:
            row["nonstream_c1_p50_ms"] = (ns[target]["c1"]["lat_p50_us"] - ns["direct"]["c1"]["lat_p50_us"]) / 1000
            row["nonstream_c1_p99_ms"] = (ns[target]["c1"]["lat_p99_us"] - ns["direct"]["c1"]["lat_p99_us"]) / 1000
        for key, group in (("stream_c1", c1), ("stream_many", many)):
            if target in group and "direct" in group and group[target]["ttft_ms"].get("n"):
                for q in ("p50", "p99"):
                    row[f"{key}_ttft_{q}_ms"] = group[target]["ttft_ms"][q] - group["direct"]["ttft_ms"][q]
        if row:
            added[target] = row
    res["added"] = added
    goals = []
    d = added.get("deltallm", {})
    if "nonstream_c1_p50_ms" in d:
        goals.append(("added latency p50 at c=1", d["nonstream_c1_p50_ms"], "<=", GOALS["added_p50_ms"], "ms"))
        goals.append(("added latency p99 at c=1", d["nonstream_c1_p99_ms"], "<=", GOALS["added_p99_ms"], "ms"))
    c50 = ns.get("deltallm", {}).get("c50")
    if c50:
        goals.append(("non-streaming req/s at c=50", c50["rps"], ">=", GOALS["rps_c50"], "req/s"))
    m = many.get("deltallm")
    if m:
        rss = m.get("worker_rss_mb", {})
        peak = max(rss.get("VmHWM") or 0, rss.get("peak_sampled") or 0)
        goals.append((f"{m['streams']} concurrent streams: worker peak RSS", peak, "<", GOALS["stream_rss_mb"], "MB"))
        goals.append((f"{m['streams']} concurrent streams: errors + incomplete", m["errors"] + m["incomplete"],
                      "==", 0, ""))
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b}
    res["goals"] = [{"goal": name, "value": round(value, 3), "op": op, "limit": limit, "unit": unit,
                     "pass": ops[op](value, limit)} for name, value, op, limit, unit in goals]


def fmt(value, spec="{:.2f}"):
    return "-" if value is None else spec.format(value)


def table(res, targets):
    lines = []
    width = 44

    def row(label, values, spec="{:.2f}"):
        lines.append(f"{label:<{width}}" + "".join(f"{fmt(v, spec):>12}" for v in values))

    lines.append(f"{'':<{width}}" + "".join(f"{t:>12}" for t in targets))
    ns = res.get("nonstream", {})
    if ns:
        for conns in sorted({int(k[1:]) for t in ns.values() for k in t}):
            key = f"c{conns}"
            get = lambda t, f, k=key: ns.get(t, {}).get(k, {}).get(f)  # noqa: E731
            row(f"non-stream c={conns}: req/s", [get(t, "rps") for t in targets], "{:.0f}")
            row(f"non-stream c={conns}: latency p50 ms", [(get(t, "lat_p50_us") or 0) / 1000 if get(t, "lat_p50_us") is not None else None for t in targets])
            row(f"non-stream c={conns}: latency p99 ms", [(get(t, "lat_p99_us") or 0) / 1000 if get(t, "lat_p99_us") is not None else None for t in targets])
            row(f"non-stream c={conns}: errors (non-2xx/socket)", [get(t, "errors") for t in targets], "{:d}")
            row(f"non-stream c={conns}: worker CPU %", [get(t, "worker_cpu_pct") for t in targets], "{:.0f}")
            row(f"non-stream c={conns}: other load % (noise)", [get(t, "other_cpu_pct") for t in targets], "{:.0f}")
    added = res.get("added", {})
    if any("nonstream_c1_p50_ms" in v for v in added.values()):
        row("added latency c=1 p50 ms (minus direct)", [added.get(t, {}).get("nonstream_c1_p50_ms") for t in targets])
        row("added latency c=1 p99 ms (minus direct)", [added.get(t, {}).get("nonstream_c1_p99_ms") for t in targets])
    c1 = res.get("stream_c1", {})
    if c1:
        row("stream c=1: TTFT p50 ms", [c1.get(t, {}).get("ttft_ms", {}).get("p50") for t in targets])
        row("stream c=1: TTFT p99 ms", [c1.get(t, {}).get("ttft_ms", {}).get("p99") for t in targets])
        row("stream c=1: added TTFT p50 ms", [added.get(t, {}).get("stream_c1_ttft_p50_ms") for t in targets])
        row("stream c=1: added TTFT p99 ms", [added.get(t, {}).get("stream_c1_ttft_p99_ms") for t in targets])
        row("stream c=1: failed streams", [(c1[t]["errors"] + c1[t]["incomplete"]) if t in c1 else None for t in targets], "{:d}")
    many = res.get("stream_many", {})
    if many:
        n = next(iter(many.values()))["streams"]
        row(f"{n} streams: TTFT p50 ms", [many.get(t, {}).get("ttft_ms", {}).get("p50") for t in targets])
        row(f"{n} streams: TTFT p99 ms", [many.get(t, {}).get("ttft_ms", {}).get("p99") for t in targets])
        row(f"{n} streams: added TTFT p50 ms", [added.get(t, {}).get("stream_many_ttft_p50_ms") for t in targets])
        row(f"{n} streams: added TTFT p99 ms", [added.get(t, {}).get("stream_many_ttft_p99_ms") for t in targets])
        row(f"{n} streams: peak open at once", [many.get(t, {}).get("peak_open") for t in targets], "{:d}")
        row(f"{n} streams: errors", [many.get(t, {}).get("errors") for t in targets], "{:d}")
        row(f"{n} streams: incomplete (no [DONE]/short)", [many.get(t, {}).get("incomplete") for t in targets], "{:d}")

        def peak(t):
            rss = many.get(t, {}).get("worker_rss_mb")
            return max(rss.get("VmHWM") or 0, rss.get("peak_sampled") or 0) if rss else None
        row(f"{n} streams: worker peak RSS MB", [peak(t) for t in targets], "{:.0f}")
        row(f"{n} streams: worker RSS before MB", [(many.get(t, {}).get("worker_rss_mb") or {}).get("before") for t in targets], "{:.0f}")
        row(f"{n} streams: worker CPU % of one core", [many.get(t, {}).get("worker_cpu_pct") for t in targets], "{:.0f}")
    if res.get("upstream_capacity"):
        lines.append(f"fake upstream alone (1 core, wrk -c50 on the other): {res['upstream_capacity']['rps']:.0f} req/s")
    for g in res.get("goals", []):
        lines.append(f"goal {'PASS' if g['pass'] else 'MISS'}: DeltaLLM {g['goal']} = {g['value']} {g['unit']} "
                     f"(goal {g['op']} {g['limit']})")
    return "\n".join(lines)



def machine_info():
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        from importlib.metadata import version
        info["versions"] = {p: version(p) for p in ("gunicorn", "gevent", "flask", "requests", "urllib3", "orjson")}
    except Exception:  # noqa: BLE001 - informational only
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info
