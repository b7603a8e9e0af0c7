"""The usage writer (batches, outage, overflow, drain) and the spend/usage reports, SQLite and PostgreSQL."""
import datetime as dt
import time
import uuid
from urllib.parse import urlparse

import psycopg2
import pytest

from deltallm import db, models
from deltallm.errors import InvalidRequest
from deltallm.governance import reports
from deltallm.governance.usage import UsageWriter, make_record
from tests.conftest import POSTGRES_URL

T0 = dt.datetime(2026, 3, 1, 23, 0, 0)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    url = str(tmp_path / "usage.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    handle = db.init(url)
    # the writer's flusher is a real thread here (a greenlet in the gevent server, where SQLite's
    # same-thread check cannot trip): pooled connections move between threads
    if request.param == "sqlite":
        handle.connect_params["check_same_thread"] = False
    models.migrate()
    if request.param == "postgres":
        with db.connection():
            models.Usage.delete().execute()
    yield handle
    handle.close_all()


def row(minutes=0, key="k1", model="gpt-4o", spend=0.01, prompt=10, completion=5, **extra):
    return make_record(key_id=key, model=model, deployment="d1", endpoint="/v1/chat/completions",
                       status=extra.pop("status", 200), spend=spend,
                       usage={"prompt_tokens": prompt, "completion_tokens": completion},
                       latency_ms=12, created_at=T0 + dt.timedelta(minutes=minutes), **extra)


def test_writer_batches_rows_and_drain_flushes_everything(database):
    writer = UsageWriter(batch_size=7, interval=30)     # the timer never fires during the test
    for i in range(20):
        assert writer.record(row(i))
    assert writer.close() and writer.pending == 0
    assert writer.written == 20 and models.Usage.select().count() == 20
    stored = models.Usage.select().order_by(models.Usage.id).first()
    assert (stored.total_tokens, stored.status, stored.stream, stored.endpoint) == (15, 200, False,
                                                                                   "/v1/chat/completions")



def test_under_gevent_sqlite_batches_are_written_from_a_real_thread(database, monkeypatch):
    """In a gevent worker a SQLite insert would hold up every request of the worker while it runs; the
    writer sends it to gevent's thread pool (PostgreSQL's driver waits cooperatively: unchanged)."""
    import threading

    from deltallm.governance import usage
    writer = UsageWriter(batch_size=5, interval=30)
    writer.off_hub = True
    seen = []
    real = usage.insert_sqlite

    def spy(path, sql, rows):
        seen.append(threading.get_ident())
        return real(path, sql, rows)
    monkeypatch.setattr(usage, "insert_sqlite", spy)
    for i in range(12):
        writer.record(row(i))
    assert writer.close() and writer.written == 12 and models.Usage.select().count() == 12
    if database.__class__.__name__.endswith("SqliteDatabase"):
        assert len(seen) == 3 and threading.get_ident() not in seen
    else:
        assert seen == []

def test_writer_flushes_in_the_background(database):
    writer = UsageWriter(interval=0.05)
    writer.record(row())
    deadline = time.monotonic() + 10
    while writer.written < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert writer.written == 1 and models.Usage.select().count() == 1
    writer.close()


def test_overflow_is_dropped_and_counted(database, caplog):
    writer = UsageWriter(max_queue=5, interval=30)
    results = [writer.record(row(i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3 and writer.dropped == 3
    assert "3 usage records dropped" in caplog.text or "1 usage records dropped" in caplog.text
    writer.close()
    assert models.Usage.select().count() == 5


def test_records_wait_through_a_database_outage_then_land(pg_url):
    """The database does not exist yet (connections fail); once it does, the same rows are written."""
    name = f"deltallm_outage_{uuid.uuid4().hex[:8]}"
    url = urlparse(pg_url)._replace(path=f"/{name}").geturl()
    handle = db.init(url)
    writer = UsageWriter(interval=0.05, retry_interval=0.05)
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    try:
        for i in range(3):
            writer.record(row(i))
        deadline = time.monotonic() + 10
        while writer.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.failures >= 2 and writer.pending == 3 and writer.written == 0
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        models.migrate()
        writer.record(row(3))
        assert writer.close(timeout=10)
        assert writer.written == 4
        with db.connection():
            stored = sorted(r.created_at for r in models.Usage.select())
        assert stored == [row(i)["created_at"] for i in range(4)]
    finally:
        writer.close(timeout=0)
        handle.close_all()
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def load(rows):
    writer = UsageWriter(interval=30)
    for r in rows:
        writer.record(r)
    assert writer.close()


def test_spend_report_groups_and_totals(database):
    load([row(0, "k1", "gpt-4o", 0.5), row(30, "k1", "mini", 0.25), row(90, "k2", "gpt-4o", 1.0),
          row(24 * 60 + 90, "k2", "mini", 2.0, status=500, prompt=0, completion=0)])
    everything = reports.spend_report()
    assert everything["object"] == "spend" and everything["data"] == []
    assert everything["total"] == {"spend": 3.75, "requests": 4, "prompt_tokens": 30,
                                   "completion_tokens": 15, "total_tokens": 45}
    by_day = reports.spend_report(group_by="day")["data"]
    assert [(d["group"], d["spend"], d["requests"]) for d in by_day] == [
        ("2026-03-01", 0.75, 2), ("2026-03-02", 1.0, 1), ("2026-03-03", 2.0, 1)]
    by_key = reports.spend_report(group_by="key", model="gpt-4o")["data"]
    assert [(d["group"], d["spend"]) for d in by_key] == [("k2", 1.0), ("k1", 0.5)]
    # ISO with Z and unix seconds; end exclusive
    start = "2026-03-01T23:30:00Z"
    end = int((T0 + dt.timedelta(minutes=90)).replace(tzinfo=dt.timezone.utc).timestamp())
    window = reports.spend_report(start=start, end=str(end), group_by="model")
    assert window["start"] == "2026-03-01T23:30:00Z" and window["end"] == "2026-03-02T00:30:00Z"
    assert window["total"]["requests"] == 1 and window["data"][0]["group"] == "mini"
    assert reports.spend_since("k2", T0 + dt.timedelta(minutes=60)) == 3.0
    with pytest.raises(InvalidRequest):
        reports.spend_report(group_by="week")
    with pytest.raises(InvalidRequest):
        reports.spend_report(start="yesterday")


def test_usage_list_pages_newest_first_with_filters(database):
    load([row(i, key="k1" if i % 2 else "k2") for i in range(5)])
    page = reports.usage_list(limit=2)
    assert page["object"] == "list" and page["has_more"] is True
    assert [r["created_at"] for r in page["data"]] == ["2026-03-01T23:04:00Z", "2026-03-01T23:03:00Z"]
    first = page["data"][0]
    assert set(first) >= {"id", "request_id", "created_at", "key_id", "model", "deployment", "endpoint",
                          "status", "prompt_tokens", "completion_tokens", "total_tokens", "spend",
                          "latency_ms", "stream"}
    rest = reports.usage_list(limit=10, after=page["data"][-1]["id"])
    assert len(rest["data"]) == 3 and rest["has_more"] is False
    assert [r["key_id"] for r in reports.usage_list(key_id="k1")["data"]] == ["k1", "k1"]
    assert reports.usage_list(model="nope")["data"] == []
    for bad in ({"limit": 0}, {"limit": "x"}, {"after": "abc"}, {"limit": 5000}):
        with pytest.raises(InvalidRequest):
            reports.usage_list(**bad)


def test_the_limiters_spend_is_seeded_from_the_usage_log_of_the_period(database):
    from deltallm.governance.limits import Limiter, Policy
    load([row(0, "k1", spend=0.5), row(30, "k1", spend=0.25), row(90, "k1", spend=1.0),
          row(91, "k2", spend=9)])
    now = (T0 + dt.timedelta(minutes=95)).replace(tzinfo=dt.timezone.utc).timestamp()
    limiter = Limiter(None, seed=reports.spend_since, clock=lambda: now)
    policy = Policy("k1", max_budget=1.2, budget_duration="1h", budget_anchor=T0)
    assert limiter.spend(policy) == (1.0, T0 + dt.timedelta(hours=2))   # only this period's record
    limiter.acquire(policy, "gpt-4o", cost=0.1).finish(cost=0.15)
    assert limiter.spend(policy)[0] == pytest.approx(1.15)


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, gevent
from deltallm import db, models
from deltallm.governance.usage import UsageWriter, make_record
db.init(sys.argv[1]); models.migrate()
writer = UsageWriter(interval=0.05)
for i in range(3):
    writer.record(make_record(key_id="k", model="m", deployment="d", endpoint="/v1/embeddings", status=200))
gevent.sleep(0.5)
background = writer.written
writer.record(make_record(key_id="k", model="m", deployment="d", endpoint="/v1/embeddings", status=200))
writer.close()
with db.connection():
    print(background, writer.written, models.Usage.select().count())
"""


def test_the_flusher_is_a_greenlet_under_gevent(tmp_path):
    """As in the gevent server: the thread is a greenlet and SQLite's same-thread check cannot trip."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, str(tmp_path / "g.db")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["3", "4", "4"]


def test_a_record_after_close_is_written_at_once(tmp_path):
    from deltallm import db, models
    from deltallm.governance.usage import UsageWriter, make_record
    db.init(str(tmp_path / "late.db"))
    models.migrate()
    writer = UsageWriter(interval=0.05)
    writer.close()
    assert writer.record(make_record(key_id=None, model="m", deployment="d", endpoint="/v1/chat/completions",
                                     status=200)) is True
    assert writer.thread is None  # no flusher was started again after close
    with db.connection():
        assert models.Usage.select().count() == 1
