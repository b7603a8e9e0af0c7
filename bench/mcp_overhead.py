"""The time DeltaLLM adds to one MCP tool round trip, with a zero-latency mock model and a fake MCP server.

Run from the repository root: python bench/mcp_overhead.py [--requests N]. It starts the fake MCP server
(tests/fakes/mcp.py) and DeltaLLM (gunicorn, one gevent worker) on localhost, then times, one request
at a time: `plain` (a chat request, no tools: one model turn), `mcp` (the same with one MCP tool: two
model turns and one tools/call) and `direct` (tools/call straight to the fake server with DeltaLLM's
own MCP client). The MCP round trip costs `mcp - plain` end to end; of that, the gateway's own share
is the difference of the x-deltallm-overhead-ms headers (which count tool time as upstream time).
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, stop, wait_until_up  # noqa: E402

MASTER = "sk-bench-mcp"
MESSAGES = [{"role": "user", "content": "What is the answer?"}]


def config(mcp_url, db):
    return f"""
model_list:
  - model_name: plain
    deltallm_params: {{model: mock/bench}}
  - model_name: tools
    deltallm_params: {{model: mock/bench, mock_tool_calls: first}}
mcp_servers:
  bench: {{url: {mcp_url}}}
general_settings:
  master_key: {MASTER}
  database_url: {db}
"""


def timed(session, url, body, key):
    started = time.perf_counter()
    resp = session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    wall = (time.perf_counter() - started) * 1000
    if resp.status_code != 200:
        raise RuntimeError(f"{resp.status_code}: {resp.text[:300]}")
    return wall, float(resp.headers["x-deltallm-overhead-ms"])


def measure(gateway, mcp_url, n, warmup=20, key=MASTER):
    """{name: (median wall ms, p90 wall ms, median overhead-header ms)} for plain, mcp and direct."""
    from deltallm.mcp.client import McpClient
    url = gateway + "/v1/chat/completions"
    bodies = {"plain": {"model": "plain", "messages": MESSAGES},
              "mcp": {"model": "tools", "messages": MESSAGES,
                      "tools": [{"type": "mcp", "server": "bench", "allowed_tools": ["echo"]}]}}
    out = {}
    with requests.Session() as session:
        for name, body in bodies.items():
            for _ in range(warmup):
                timed(session, url, body, key)
            samples = [timed(session, url, body, key) for _ in range(n)]
            walls = sorted(s[0] for s in samples)
            out[name] = (statistics.median(walls), walls[int(0.9 * (len(walls) - 1))],
                         statistics.median(s[1] for s in samples))
    client = McpClient("bench", mcp_url)
    for _ in range(warmup):
        client.call_tool("echo", {"text": "x"})
    walls = []
    for _ in range(n):
        started = time.perf_counter()
        client.call_tool("echo", {"text": "x"})
        walls.append((time.perf_counter() - started) * 1000)
    walls.sort()
    out["direct"] = (statistics.median(walls), walls[int(0.9 * (len(walls) - 1))], 0.0)
    return out


def report(out):
    lines = ["| what | wall p50 ms | wall p90 ms | x-deltallm-overhead-ms p50 |", "| --- | ---: | ---: | ---: |"]
    for name in ("plain", "mcp", "direct"):
        wall, p90, overhead = out[name]
        lines.append(f"| {name} | {wall:.2f} | {p90:.2f} | {overhead:.2f} |")
    added = out["mcp"][0] - out["plain"][0]
    own = out["mcp"][2] - out["plain"][2]
    lines.append(f"\none MCP round trip adds {added:.2f} ms end to end (a second model turn and one tools/call), "
                 f"of which {own:.2f} ms is the gateway's own work; the bare tools/call takes "
                 f"{out['direct'][0]:.2f} ms from a client")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-mcp-"))
    mcp_port, port = free_port(), free_port()
    procs = []
    try:
        log = tmp / "mcp.log"
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.fakes.mcp", str(mcp_port)], cwd=ROOT,
                                      stdout=log.open("w"), stderr=subprocess.STDOUT))
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        (tmp / "config.yaml").write_text(config(mcp_url, tmp / "bench.db"))
        env = {**os.environ, "DELTALLM_CONFIG_PATH": str(tmp / "config.yaml"), "WEB_CONCURRENCY": "1"}
        glog = tmp / "gunicorn.log"
        procs.append(subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                                       f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                                      stdout=glog.open("w"), stderr=subprocess.STDOUT))
        gateway = f"http://127.0.0.1:{port}"
        wait_until_up(gateway + "/health/readiness", procs[1], glog)
        print(report(measure(gateway, mcp_url, args.requests)))
    finally:
        for proc in reversed(procs):
            stop(proc, quick=True)


if __name__ == "__main__":
    main()
