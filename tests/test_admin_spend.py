"""GET /admin/spend and /admin/usage, and a key's `spend` / `budget_reset_at` in the admin key reads,
on SQLite and PostgreSQL."""
import datetime as dt

import pytest

from deltallm import create_app, db, models
from deltallm.governance import key_spend
from deltallm.governance.usage import make_record
from deltallm.models import ApiKey, Usage, utcnow
from tests.conftest import UPSTREAM, base_config

CHAT = "/v1/chat/completions"
T0 = dt.datetime(2026, 3, 1, 23, 0, 0)
# prices for the mock model: every answer has a known, non-zero cost
PRICED = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}


@pytest.fixture(params=["sqlite", "postgres"])
def app(request, tmp_path):
    config = base_config(tmp_path)
    if request.param == "postgres":
        config["general_settings"]["database_url"] = request.getfixturevalue("pg_url")
    for entry in config["model_list"]:
        if entry["model_name"] == "mocky":
            entry["model_info"] = PRICED
    app = create_app(config)
    app.config["TESTING"] = True
    if request.param == "postgres":
        with db.connection():
            db.database.drop_tables(models.MODELS, safe=True)  # our own throw-away database
    models.migrate()
    yield app
    app.extensions["deltallm"].writer.close()
    db.database.close_all()


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def insert(*rows):
    with db.connection():
        Usage.insert_many(rows).execute()


def row(minutes=0, key="k1", model="gpt-4o", spend=0.01, prompt=10, completion=5, status=200, **extra):
    return make_record(key_id=key, model=model, deployment="d1", endpoint="/v1/chat/completions",
                       status=status, spend=spend, usage={"prompt_tokens": prompt, "completion_tokens": completion},
                       latency_ms=12, created_at=T0 + dt.timedelta(minutes=minutes), **extra)


def unix(moment):
    return int(moment.replace(tzinfo=dt.timezone.utc).timestamp())


def test_spend_totals_and_groups(client, master):
    insert(row(0, "k1", "gpt-4o", 0.5), row(30, "k1", "mini", 0.25), row(90, "k2", "gpt-4o", 1.0),
           row(24 * 60 + 90, "k2", "mini", 2.0, status=500, prompt=0, completion=0))
    everything = client.get("/admin/spend", headers=master)
    assert everything.status_code == 200
    body = everything.get_json()
    assert body["object"] == "spend" and body["start"] is None and body["end"] is None
    assert body["total"] == {"spend": 3.75, "requests": 4, "prompt_tokens": 30, "completion_tokens": 15,
                             "total_tokens": 45}
    assert body["data"] == []
    by_day = client.get("/admin/spend?group_by=day", headers=master).get_json()["data"]
    assert [(d["group"], d["spend"], d["requests"]) for d in by_day] == [
        ("2026-03-01", 0.75, 2), ("2026-03-02", 1.0, 1), ("2026-03-03", 2.0, 1)]
    assert set(by_day[0]) == {"group", "spend", "requests", "prompt_tokens", "completion_tokens", "total_tokens"}
    by_key = client.get("/admin/spend?group_by=key&model=gpt-4o", headers=master).get_json()
    assert [(d["group"], d["spend"]) for d in by_key["data"]] == [("k2", 1.0), ("k1", 0.5)]
    assert by_key["total"]["spend"] == 1.5
    by_model = client.get("/admin/spend?group_by=model&key_id=k1", headers=master).get_json()["data"]
    assert {d["group"]: d["spend"] for d in by_model} == {"gpt-4o": 0.5, "mini": 0.25}


def test_spend_window_iso_or_unix_end_exclusive(client, master):
    insert(row(0, spend=1.0), row(30, spend=2.0), row(60, spend=4.0))
    end = unix(T0 + dt.timedelta(minutes=60))          # the 60-minute row is excluded
    window = client.get(f"/admin/spend?start=2026-03-01T23:00:00Z&end={end}", headers=master).get_json()
    assert window["start"] == "2026-03-01T23:00:00Z" and window["end"] == "2026-03-02T00:00:00Z"
    assert window["total"]["spend"] == 3.0 and window["total"]["requests"] == 2
    offset = client.get("/admin/spend?start=2026-03-02T00:30:00%2B01:00", headers=master).get_json()
    assert offset["start"] == "2026-03-01T23:30:00Z" and offset["total"]["spend"] == 6.0


@pytest.mark.parametrize("query,param", [
    ("group_by=week", "group_by"), ("start=yesterday", "start"), ("end=abc", "end"), ("start=-5", "start"),
    ("end=1e999", "end"), ("start=99999999999999999999", "start"), ("colour=red", "colour"),
    ("key_id=a&key_id=b", "key_id"), ("key_id=a%00b", "key_id"), ("model=" + "m" * 300, "model"),
])
def test_bad_spend_queries_are_400_naming_the_param(client, master, query, param):
    resp = client.get(f"/admin/spend?{query}", headers=master)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["error"]["type"] == "invalid_request_error"
    assert resp.get_json()["error"]["param"] == param


def test_usage_lists_records_newest_first_with_paging_and_filters(client, master):
    insert(*[row(i, key="k1" if i % 2 else "k2", model="a" if i < 3 else "b", stream=i == 4) for i in range(5)])
    page = client.get("/admin/usage?limit=2", headers=master).get_json()
    assert page["object"] == "list" and page["has_more"] is True
    first = page["data"][0]
    assert set(first) == {"id", "request_id", "created_at", "key_id", "model", "deployment", "endpoint", "status",
                          "prompt_tokens", "completion_tokens", "total_tokens", "spend", "latency_ms", "stream",
                          "cache_hit"}
    assert first["created_at"] == "2026-03-01T23:04:00Z" and first["stream"] is True
    assert (first["status"], first["total_tokens"], first["endpoint"]) == (200, 15, "/v1/chat/completions")
    rest = client.get(f"/admin/usage?limit=10&after={page['data'][-1]['id']}", headers=master).get_json()
    assert [r["created_at"][-5:-1] for r in rest["data"]] == ["2:00", "1:00", "0:00"]
    assert rest["has_more"] is False
    assert [r["key_id"] for r in client.get("/admin/usage?key_id=k1", headers=master).get_json()["data"]] == \
        ["k1", "k1"]
    assert len(client.get("/admin/usage?model=a&key_id=k2", headers=master).get_json()["data"]) == 2
    assert client.get("/admin/usage?model=nope", headers=master).get_json() == {"object": "list", "data": [],
                                                                                "has_more": False}


@pytest.mark.parametrize("query,param", [
    ("limit=0", "limit"), ("limit=x", "limit"), ("limit=5000", "limit"), ("after=abc", "after"),
    ("after=-1", "after"), ("after=99999999999999999999", "after"), ("start=2026-01-01", "start"),
    ("key_id=%00", "key_id"),
])
def test_bad_usage_queries_are_400_naming_the_param(client, master, query, param):
    resp = client.get(f"/admin/usage?{query}", headers=master)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["error"]["param"] == param


def test_reports_need_the_master_key(client, auth):
    for path in ("/admin/spend", "/admin/usage"):
        assert client.get(path, headers=auth).status_code == 403
        assert client.get(path).status_code == 401


def test_key_spend_is_the_sum_of_its_usage_records_end_to_end(app, client, master, upstream):
    """Requests through the gateway (plain, streamed, shortened, failed upstream) land in the usage log;
    the key's spend, /admin/spend and the records agree."""
    key = client.post("/admin/keys", json={"name": "e2e", "max_budget": 100}, headers=master).get_json()
    other = client.post("/admin/keys", json={}, headers=master).get_json()
    hello = {"model": "mocky", "messages": [{"role": "user", "content": "hello there"}]}
    for body in (hello, dict(hello, stream=True), dict(hello, max_tokens=3)):
        resp = client.post(CHAT, json=body, headers=bearer(key["key"]))
        assert resp.status_code == 200
        resp.get_data()
        resp.close()             # a stream settles when its body is closed
    upstream.add("POST", f"{UPSTREAM}/chat/completions", json={"error": {"message": "down"}}, status=500)
    failed = client.post(CHAT, json=dict(hello, model="gpt-4o-mini"), headers=bearer(key["key"]))
    assert failed.status_code == 502
    assert client.post(CHAT, json=hello, headers=bearer(other["key"])).status_code == 200
    assert app.extensions["deltallm"].writer.drain()
    records = client.get(f"/admin/usage?key_id={key['id']}", headers=master).get_json()["data"]
    assert [(r["model"], r["status"], r["stream"]) for r in records] == [
        ("gpt-4o-mini", 502, False), ("mocky", 200, False), ("mocky", 200, True), ("mocky", 200, False)]
    assert records[0]["spend"] == 0.0 and all(r["endpoint"] == CHAT for r in records)
    total = round(sum(r["spend"] for r in records), 10)
    assert total > 0
    read = client.get(f"/admin/keys/{key['id']}", headers=master).get_json()
    assert read["spend"] == pytest.approx(total, abs=1e-9)
    assert read["budget_reset_at"] is None           # no budget_duration: spend never resets
    report = client.get(f"/admin/spend?key_id={key['id']}", headers=master).get_json()
    assert report["total"]["spend"] == pytest.approx(total, abs=1e-9) and report["total"]["requests"] == 4
    listed = {k["id"]: k["spend"] for k in client.get("/admin/keys", headers=master).get_json()["data"]}
    assert listed[key["id"]] == read["spend"] and 0 < listed[other["id"]] < total
    by_key = client.get("/admin/spend?group_by=key", headers=master).get_json()["data"]
    assert {d["group"]: d["requests"] for d in by_key} == {key["id"]: 4, other["id"]: 1}


def set_key(key_id, **fields):
    with db.connection():
        ApiKey.update(**fields).where(ApiKey.id == key_id).execute()


def test_spend_counts_the_current_budget_period_only(client, master):
    key = client.post("/admin/keys", json={"max_budget": 10, "budget_duration": "1h"}, headers=master).get_json()
    now = utcnow()
    anchor = now - dt.timedelta(hours=2, minutes=30)      # periods: -2h30, -1h30, -30m (current)
    set_key(key["id"], budget_period_start=anchor)
    current_start = anchor + dt.timedelta(hours=2)
    insert(row(key=key["id"], spend=1.0) | {"created_at": current_start - dt.timedelta(seconds=1)},
           row(key=key["id"], spend=2.0) | {"created_at": current_start},
           row(key=key["id"], spend=4.0) | {"created_at": now - dt.timedelta(minutes=1)},
           row(key="someone-else", spend=8.0) | {"created_at": now - dt.timedelta(minutes=1)})
    read = client.get(f"/admin/keys/{key['id']}", headers=master).get_json()
    assert read["spend"] == 6.0
    reset = dt.datetime.fromisoformat(read["budget_reset_at"].rstrip("Z"))
    assert abs((reset - (current_start + dt.timedelta(hours=1))).total_seconds()) <= 1
    # an hour later the period has rolled over: the spend starts from zero
    later = key_spend.key_spends([ApiKey.get_by_id(key["id"])], now=now + dt.timedelta(hours=1))
    assert later[key["id"]] == (0.0, current_start + dt.timedelta(hours=2))


def test_changing_budget_duration_starts_a_new_period(client, master):
    key = client.post("/admin/keys", json={"max_budget": 10, "budget_duration": "1d"}, headers=master).get_json()
    with db.connection():
        stored = ApiKey.get_by_id(key["id"])
    assert stored.budget_period_start == stored.created_at
    insert(row(key=key["id"], spend=1.5) | {"created_at": utcnow()})
    assert client.get(f"/admin/keys/{key['id']}", headers=master).get_json()["spend"] == 1.5
    same = client.patch(f"/admin/keys/{key['id']}", json={"budget_duration": "1d", "max_budget": 20},
                        headers=master).get_json()
    assert same["spend"] == 1.5 and same["max_budget"] == 20          # unchanged duration: same period
    changed = client.patch(f"/admin/keys/{key['id']}", json={"budget_duration": "1h"}, headers=master).get_json()
    assert changed["spend"] == 0.0 and changed["budget_reset_at"] is not None
    with db.connection():
        assert ApiKey.get_by_id(key["id"]).budget_period_start > stored.budget_period_start
    cleared = client.patch(f"/admin/keys/{key['id']}", json={"budget_duration": None}, headers=master).get_json()
    assert cleared["budget_reset_at"] is None and cleared["budget_duration"] is None


def test_listing_keys_sums_spend_in_one_query(client, master, monkeypatch):
    ids = []
    for i, duration in enumerate([None, "1h", "1d", None, "30d"]):
        fields = {"budget_duration": duration} if duration else {}
        ids.append(client.post("/admin/keys", json=fields, headers=master).get_json()["id"])
        insert(row(key=ids[-1], spend=i + 0.5) | {"created_at": utcnow()})
    set_key(ids[1], budget_period_start=utcnow() - dt.timedelta(minutes=90))   # its period began 30 min ago
    insert(row(key=ids[1], spend=100.0) | {"created_at": utcnow() - dt.timedelta(minutes=45)})
    statements = []
    execute = db.database.obj.execute_sql

    def counting(sql, *args, **kwargs):
        statements.append(sql)
        return execute(sql, *args, **kwargs)
    monkeypatch.setattr(db.database.obj, "execute_sql", counting)
    page = client.get("/admin/keys?limit=10", headers=master).get_json()
    assert sum('"deltallm_usage"' in sql for sql in statements) == 1
    assert {k["id"]: k["spend"] for k in page["data"]} == {ids[i]: i + 0.5 for i in range(5)}
    assert [k["budget_reset_at"] is None for k in page["data"]] == [False, True, False, False, True]


def test_spend_of_many_keys_in_chunks(app):
    """`deltallm keys list` reads every key: the clauses go in chunks that SQLite and PostgreSQL take."""
    now = utcnow()
    rows = [{"id": f"bulk{i:04d}", "key_hint": "h", "salt": "s", "key_hash": "x",
             "created_at": now - dt.timedelta(seconds=i), "budget_duration": "1d" if i % 3 else None}
            for i in range(250)]
    with db.connection():
        ApiKey.insert_many(rows).execute()
        insert(*[row(key=r["id"], spend=0.5) | {"created_at": now} for r in rows[::2]])
        keys = list(ApiKey.select().where(ApiKey.id.startswith("bulk")))
    spends = key_spend.key_spends(keys)
    assert len(spends) == 250 and spends["bulk0000"][0] == 0.5 and spends["bulk0001"][0] == 0.0
    assert sum(spent for spent, _ in spends.values()) == 62.5
    assert (spends["bulk0000"][1] is None, spends["bulk0001"][1] is None) == (True, False)
