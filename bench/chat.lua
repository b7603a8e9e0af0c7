-- wrk script: POST a short non-streaming chat request and print the results as one JSON line.
-- The body, key and model come from the environment (BENCH_MODEL, BENCH_KEY) so run.py can share it.
local model = os.getenv("BENCH_MODEL") or "bench"
local key = os.getenv("BENCH_KEY") or "sk-bench"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are terse."},' ..
           '{"role":"user","content":"Say hello in five words."}],"max_tokens":16,"temperature":0}'

-- No response() callback: wrk would then parse every body. Non-2xx answers are counted by wrk
-- itself (summary.errors.status).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.2f,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"lat_mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
