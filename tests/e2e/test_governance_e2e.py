"""Governance end to end (real gunicorn, two gevent workers): limits hold exactly across workers, leases
come back, no usage record is lost on SIGTERM, a Redis outage fails open or closed as configured, and
a key's spend equals its usage records after a mixed load."""
import collections
import concurrent.futures
import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from urllib.parse import urlparse

import pytest
import redis
import requests

from tests.conftest import REDIS_URL, free_port
from tests.e2e.conftest import MASTER, running_gateway

ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICES = "model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}"
# a long prompt makes the mock's stream long: one word per chunk, `mock_chunk_delay_ms` apart
LONG_PROMPT = " ".join(f"word{i}" for i in range(60))


def config(db_path, upstream="http://127.0.0.1:1", general=""):
    return f"""
model_list:
  - model_name: fast
    deltallm_params: {{model: mock/fast, mock_latency_ms: 20}}
    {PRICES}
  - model_name: slow
    deltallm_params: {{model: mock/slow, mock_latency_ms: 3000}}
  - model_name: trickle
    deltallm_params: {{model: mock/trickle, mock_chunk_delay_ms: 100}}
    {PRICES}
  - model_name: steady
    deltallm_params: {{model: mock/steady, mock_latency_ms: 300}}
  - model_name: paced
    deltallm_params: {{model: mock/paced, mock_latency_ms: 50, mock_chunk_delay_ms: 20}}
  - model_name: upstream
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream}/v1, api_key: upstream-secret}}
    {PRICES}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: {MASTER}, database_url: {db_path}{general}}}
"""


@pytest.fixture(scope="module")
def gateway(upstream_url, tmp_path_factory):
    """Two workers sharing the test Redis (limits and spend counters live there)."""
    tmp = tmp_path_factory.mktemp("governance")
    with running_gateway(config(tmp / "gov.db", upstream_url), tmp, REDIS_URL=REDIS_URL,
                         WEB_CONCURRENCY="2") as url:
        yield url


def new_key(url, **limits):
    resp = requests.post(url + "/admin/keys", json={"name": "governance-e2e", **limits}, headers=ADMIN,
                         timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()


def chat(url, key, model="fast", content="hello", **body):
    return requests.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": content}], **body},
                         timeout=60)


def all_at_once(count, fn):
    """Run fn(i) for i < count from `count` threads released together; their results in order."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait(60)
        return fn(i)
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def streamed_in_full(resp):
    """A streamed answer read to its end: True when it ended with [DONE]."""
    lines = [line for line in resp.iter_lines() if line]
    return bool(lines) and lines[-1] == b"data: [DONE]"


class OpenStream:
    """A streamed chat request on a raw socket: read its first event, then hang up mid-stream."""

    def __init__(self, url, key, model="trickle"):
        parsed = urlparse(url)
        body = json.dumps({"model": model, "stream": True,
                           "messages": [{"role": "user", "content": LONG_PROMPT}]}).encode()
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
        self.sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                          b"Authorization: Bearer " + key.encode() + b"\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b"data: " not in received:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed before the first event: {received!r}"
            received += chunk
        self.head = received.split(b"\r\n", 1)[0]

    def hang_up(self):
        self.sock.close()


# 1. Limits under concurrency, Redis shared by two workers

def test_rpm_limit_holds_exactly_across_two_workers(gateway):
    created = new_key(gateway, rpm_limit=10)
    key = created["key"]
    answers = all_at_once(50, lambda i: chat(gateway, key))
    assert collections.Counter(a.status_code for a in answers) == {200: 10, 429: 40}
    # counted in the shared Redis window (not per worker): the ten admitted requests are there
    window = redis.Redis.from_url(REDIS_URL).zcard(f"deltallm:rl:{{{created['id']}}}:req")
    assert window == 10
    ok = [a for a in answers if a.status_code == 200]
    # one atomic check-and-reserve: each admitted request saw a different count of the ten
    assert sorted(int(a.headers["x-ratelimit-remaining-requests"]) for a in ok) == list(range(10))
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["x-ratelimit-limit-requests"] == "10"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-reset-requests"]
    assert all(a.headers["x-ratelimit-limit-requests"] == "10" for a in ok)


def test_parallel_limit_holds_and_slots_come_back(gateway):
    key = new_key(gateway, max_parallel_requests=3)["key"]
    # ten slow requests (3 s upstream each) arrive together: at most three hold a slot
    answers = all_at_once(10, lambda i: chat(gateway, key, "slow"))
    statuses = collections.Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 429} and 1 <= statuses[200] <= 3, statuses
    assert all(a.json()["error"]["code"] == "rate_limit_exceeded" and a.headers["Retry-After"]
               for a in answers if a.status_code == 429)
    # all finished: the three slots are free again, twice over
    for _ in range(2):
        assert [a.status_code for a in all_at_once(3, lambda i: chat(gateway, key))] == [200] * 3


def test_a_client_that_hangs_up_mid_stream_gives_its_slot_back(gateway):
    key = new_key(gateway, max_parallel_requests=3)["key"]
    streams = [OpenStream(gateway, key) for _ in range(3)]
    assert all(b" 200 " in s.head for s in streams)
    assert chat(gateway, key).status_code == 429       # the three open streams hold every slot
    for stream in streams:
        stream.hang_up()
    # the server notices at its next chunk (100 ms) and settles; leases would otherwise last 10 min
    deadline = time.monotonic() + 20
    while True:
        statuses = [a.status_code for a in all_at_once(3, lambda i: chat(gateway, key))]
        if statuses == [200] * 3:
            break
        assert time.monotonic() < deadline, f"slots not released after the clients left: {statuses}"
        time.sleep(0.5)


# 4. Spend equals the sum of the usage records after a mixed load

def key_records(url, key_id, expected, timeout=20):
    """The key's usage records once `expected` of them are written (the writers flush each second)."""
    deadline = time.monotonic() + timeout
    while True:
        data = requests.get(f"{url}/admin/usage", params={"key_id": key_id, "limit": 1000}, headers=ADMIN,
                            timeout=30).json()["data"]
        if len(data) >= expected or time.monotonic() > deadline:
            return data
        time.sleep(0.3)


def test_spend_equals_the_usage_records_after_a_mixed_load(gateway):
    created = new_key(gateway, max_budget=100, rpm_limit=1000)
    key, key_id = created["key"], created["id"]

    answered = {}

    def plain(i):
        resp = chat(gateway, key, content=f"plain {i}")
        answered[resp.headers["x-request-id"]] = resp.json()["usage"]
        return resp.status_code, resp.headers["x-request-id"]

    def streamed(i):
        resp = requests.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": "fast", "stream": True,
                                   "messages": [{"role": "user", "content": f"streamed {i}"}]},
                             stream=True, timeout=60)
        assert streamed_in_full(resp)
        return resp.status_code, resp.headers["x-request-id"]

    def upstream_ok(i):
        resp = chat(gateway, key, "upstream", content=f"upstream {i}")
        return resp.status_code, resp.headers["x-request-id"]

    def upstream_failure(i):
        # the fake upstream answers 500: the record is written, with cost 0
        resp = chat(gateway, key, "upstream", content=f"[[status:500]] failure {i}")
        return resp.status_code, resp.headers["x-request-id"]

    def disconnect(i):
        stream = OpenStream(gateway, key)
        stream.hang_up()
        return 200, None

    kinds = [plain] * 6 + [streamed] * 4 + [upstream_ok] * 2 + [upstream_failure] * 2 + [disconnect] * 2
    with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
        results = list(pool.map(lambda pair: pair[1](pair[0]), enumerate(kinds)))
    failures = [status for (status, _), kind in zip(results, kinds) if kind is upstream_failure]
    assert all(status >= 500 for status in failures)
    assert all(status == 200 for (status, _), kind in zip(results, kinds) if kind is not upstream_failure)

    records = key_records(gateway, key_id, len(kinds))
    assert len(records) == len(kinds)
    by_request = {r["request_id"]: r for r in records}
    assert {rid for _, rid in results if rid} <= set(by_request)
    for request_id, usage in answered.items():     # a record has the tokens its answer reported
        record = by_request[request_id]
        assert (record["prompt_tokens"], record["completion_tokens"]) == \
            (usage["prompt_tokens"], usage["completion_tokens"])
        assert record["spend"] == pytest.approx(usage["prompt_tokens"] * 1e-6 + usage["completion_tokens"] * 2e-6)
    assert sorted(r["status"] for r in records if r["status"] >= 400) == sorted(failures)
    assert all(r["spend"] == 0 for r in records if r["status"] >= 400)
    cut = [r for r in records if r["model"] == "trickle"]
    assert len(cut) == 2 and all(r["stream"] and r["status"] == 200 and r["spend"] > 0 for r in cut)
    total = sum(r["spend"] for r in records)
    assert total > 0

    info = requests.get(f"{gateway}/admin/keys/{key_id}", headers=ADMIN, timeout=30).json()
    assert info["spend"] == pytest.approx(total, abs=1e-9)
    own = requests.get(f"{gateway}/v1/key/info", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    assert own["spend"] == pytest.approx(total, abs=1e-9)
    report = requests.get(f"{gateway}/admin/spend", params={"key_id": key_id}, headers=ADMIN, timeout=30).json()
    assert report["total"]["spend"] == pytest.approx(total, abs=1e-9)
    assert report["total"]["requests"] == len(kinds)
    # the budget's counter in Redis (what the next request is checked against) settled to the same sum
    client = redis.Redis.from_url(REDIS_URL)
    counters = list(client.scan_iter(match=f"deltallm:rl:{{{key_id}}}:spend:*"))
    assert len(counters) == 1
    assert int(client.get(counters[0])) / 1e9 == pytest.approx(total, abs=1e-6)


# 2. No usage record lost on SIGTERM under load

def usage_request_ids(db, key_id):
    if db.startswith("postgresql"):
        import psycopg2
        conn = psycopg2.connect(db)
    else:
        conn = sqlite3.connect(db)
    try:
        cur = conn.cursor()
        cur.execute("SELECT request_id FROM deltallm_usage WHERE key_id = " +
                    ("%s" if db.startswith("postgresql") else "?"), (key_id,))
        return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_no_usage_record_is_lost_on_sigterm_under_load(database, tmp_path, request):
    db = str(tmp_path / "term.db") if database == "sqlite" else request.getfixturevalue("pg_url")
    total, threads = 200, 16
    with running_gateway(config(db), tmp_path, WEB_CONCURRENCY="2") as url:
        created = new_key(url, rpm_limit=100_000)
        key, key_id = created["key"], created["id"]
        counter = iter(range(total))
        lock = threading.Lock()
        complete, errors = [], []

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                stream = i % 3 == 0
                try:
                    resp = requests.post(f"{url}/v1/chat/completions",
                                         headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                                         json={"model": "paced", "stream": stream,
                                               "messages": [{"role": "user", "content": f"load {i}"}]},
                                         stream=stream, timeout=60)
                    full = streamed_in_full(resp) if stream else bool(resp.json().get("choices"))
                except (requests.RequestException, ValueError) as error:
                    errors.append(repr(error))
                    continue
                if resp.status_code == 200 and full:
                    complete.append(resp.headers["x-request-id"])
                else:
                    errors.append(f"{resp.status_code} full={full}")

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        deadline = time.monotonic() + 30
        while len(complete) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        url.proc.send_signal(signal.SIGTERM)          # graceful: in-flight requests finish
        for thread in pool:
            thread.join(60)
        assert url.proc.wait(60) == 0, url.log.read_text()[-3000:]
    assert len(complete) >= 40
    # every request answered in full has exactly its record; nothing answered was left unrecorded
    recorded = usage_request_ids(db, key_id)
    assert len(recorded) == len(set(recorded))
    assert set(recorded) == set(complete), (len(recorded), len(complete), errors[:5])


# 3. Redis stopped mid-load: fail open (the default) or fail closed

@pytest.fixture
def private_redis():
    """A redis-server of our own on a free port (never the shared one on 6379), and a way to restart it."""
    port = free_port()
    procs = []

    def start():
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--daemonize", "no"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return proc
            except redis.RedisError:
                assert time.monotonic() < deadline and proc.poll() is None, "private redis did not start"
                time.sleep(0.05)

    start()
    yield f"redis://127.0.0.1:{port}/0", procs, start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Load:
    """Threads sending chat requests until stopped; each answer is (sent at, status, error code,
    Retry-After); a request that failed without an answer is (sent at, None, error, None)."""

    def __init__(self, url, key, threads=6):
        self.url, self.key, self.answers, self.running = url, key, [], True
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self):
        while self.running:
            sent = time.monotonic()
            try:
                # upstream time: requests are in flight (to be settled) when Redis goes away
                resp = chat(self.url, self.key, "steady")
            except requests.RequestException as error:
                self.answers.append((sent, None, repr(error), None))
                continue
            code = None if resp.status_code == 200 else resp.json()["error"]["code"]
            self.answers.append((sent, resp.status_code, code, resp.headers.get("Retry-After")))

    def sent_after(self, moment):
        return [a for a in list(self.answers) if a[0] > moment]

    def wait_for(self, count, after=0.0, timeout=30):
        """Until `count` answers to requests sent after `after` (monotonic time) are in."""
        deadline = time.monotonic() + timeout
        while len(self.sent_after(after)) < count:
            assert time.monotonic() < deadline, f"load stalled: {self.answers[-5:]}"
            time.sleep(0.02)

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join(60)


@pytest.mark.parametrize("fail_open", [True, False])
def test_redis_stopped_mid_load(fail_open, private_redis, tmp_path):
    redis_url, procs, restart = private_redis
    general = "" if fail_open else ", rate_limit_fail_open: false"
    with running_gateway(config(tmp_path / "outage.db", general=general), tmp_path, REDIS_URL=redis_url,
                         WEB_CONCURRENCY="2") as url:
        key = new_key(url, rpm_limit=1000)["key"]
        tight = new_key(url, rpm_limit=5)["key"]
        load = Load(url, key)
        try:
            load.wait_for(20)
            killed_at = time.monotonic()
            procs[0].kill()
            procs[0].wait(10)
            # requests sent once the kill has surely been noticed
            outage = killed_at + 0.5
            load.wait_for(40, after=outage)
            before = [a for a in load.answers if a[0] < killed_at]
            during = load.sent_after(outage)
            if fail_open:
                # served throughout (each worker limits on its own meanwhile), and the log says so
                assert {a[1] for a in load.answers} == {200}, load.answers[-5:]
                assert "rate limiter Redis unavailable" in url.log.read_text()
                # meanwhile each of the two workers still enforces the limits on its own
                statuses = collections.Counter(chat(url, tight).status_code for _ in range(24))
                assert set(statuses) == {200, 429} and 5 <= statuses[200] <= 10, statuses
                return
            # fail closed: served before, refused while Redis is down
            assert before and {a[1] for a in before} <= {200, 503}
            assert {(a[1], a[2], a[3]) for a in during} == {(503, "rate_limiter_unavailable", "1")}
            assert "rate_limit_fail_open is false" in url.log.read_text()
            # Redis back: after the workers' short back-off, requests are served again
            restart()
            back_at = time.monotonic()
            deadline = back_at + 20
            while not any(a[1] == 200 for a in load.sent_after(back_at)):
                assert time.monotonic() < deadline, "requests still refused after Redis came back"
                time.sleep(0.2)
        finally:
            load.stop()
