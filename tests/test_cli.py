"""The `deltallm` command: migrate, keys create/list/revoke."""
import subprocess
import sys

from deltallm import create_app


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "deltallm.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_migrate_is_idempotent_and_keys_work(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"model_list:\n  - model_name: m\n    deltallm_params: {{model: mock/m}}\n"
                   f"general_settings: {{database_url: {tmp_path / 'cli.db'}}}\n")
    for _ in range(2):
        assert run("migrate", "--config", str(cfg), cwd=tmp_path).returncode == 0
    created = run("keys", "create", "--config", str(cfg), "--models", "m", "--rpm", "5", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk-dl-") and "\n" not in key
    listed = run("keys", "list", "--config", str(cfg), cwd=tmp_path).stdout
    key_id = listed.split("\t")[0]
    assert key not in listed and key[:10] in listed

    client = create_app(str(cfg)).test_client()
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    assert run("keys", "revoke", key_id, "--config", str(cfg), cwd=tmp_path).returncode == 0
    assert run("keys", "revoke", key_id, "--config", str(cfg), cwd=tmp_path).returncode == 1
    fresh = create_app(str(cfg)).test_client()  # a new worker: no cached answer
    assert fresh.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_bad_database_url_is_one_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("general_settings: {database_url: 'postgresql://nobody@127.0.0.1:1/none'}\n")
    result = run("migrate", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot prepare the database" in result.stderr and "Traceback" not in result.stderr


def test_gunicorn_master_imports_no_database_or_http_client(tmp_path):
    """What the master imports before forking keeps the real threading.local in gevent workers."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model_list:\n  - model_name: m\n    deltallm_params: {model: anthropic/claude}\n")
    code = ("import sys, deltallm.gunicorn_config, deltallm.cli\n"
            "from deltallm import config\n"
            f"config.load({str(cfg)!r})\n"
            "print(sorted({'peewee', 'requests', 'urllib3', 'psycopg2', 'redis'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_keys_create_applies_the_admin_api_rules(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings: {{database_url: {tmp_path / 'cli.db'}}}\n")
    bad = run("keys", "create", "--config", str(cfg), "--budget-duration", "weekly", cwd=tmp_path)
    assert bad.returncode == 2 and "budget_duration" in bad.stderr and not bad.stdout
    good = run("keys", "create", "--config", str(cfg), "--expires-at", "4102444800", cwd=tmp_path)
    assert good.returncode == 0 and good.stdout.startswith("sk-dl-")


def test_migrate_never_prints_database_credentials(tmp_path, pg_url):
    cfg = tmp_path / "config.yaml"
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    cfg.write_text(f"general_settings: {{database_url: '{url}'}}\n")
    result = run("migrate", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database ready: ") and "s3cret" not in result.stdout
