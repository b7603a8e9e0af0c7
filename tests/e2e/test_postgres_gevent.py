"""Production shape: gevent workers on PostgreSQL (psycopg2 made green) and Redis, set by environment."""
import concurrent.futures

import openai
import requests

from deltallm import db, models
from tests.conftest import REDIS_URL
from tests.e2e.conftest import MASTER, running_gateway


def test_keys_on_postgres_under_gevent(tmp_path, upstream_url, pg_url):
    db.init(pg_url)
    with db.connection():
        db.database.drop_tables(models.MODELS, safe=True)  # the gunicorn master must create them
    db.database.close_all()
    config = f"""
model_list:
  - model_name: gpt-4o-mini
    deltallm_params: {{model: openai/gpt-4o-mini, api_base: {upstream_url}/v1, api_key: upstream-secret}}
general_settings: {{master_key: {MASTER}, database_url: {tmp_path / "unused.db"}}}
"""
    # DATABASE_URL / REDIS_URL in the environment override the file, as on a PaaS
    with running_gateway(config, tmp_path, DATABASE_URL=pg_url, REDIS_URL=REDIS_URL) as url:
        ready = requests.get(url + "/health/readiness", timeout=10).json()
        assert ready == {"status": "ready", "database": "ok", "redis": "ok"}
        admin = {"Authorization": f"Bearer {MASTER}"}

        def new_key(i):
            resp = requests.post(url + "/admin/keys", json={"name": f"k{i}"}, headers=admin, timeout=30)
            assert resp.status_code == 201, resp.text
            return resp.json()["key"]
        # many concurrent requests that each need the database: a blocking driver would serialize
        # them per worker; a broken green driver would fail them
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            keys = list(pool.map(new_key, range(40)))

        def use(key):
            sdk = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            return sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "pg"}])
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(use, keys))
        assert {a.choices[0].message.content for a in answers} == {"echo: pg"}
        listed = requests.get(url + "/admin/keys?limit=100", headers=admin, timeout=10).json()
        assert len(listed["data"]) == 40
    assert not (tmp_path / "unused.db").exists()
