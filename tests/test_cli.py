"""The `deltallm` command: migrate, keys create/list/revoke."""
import os
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
    cfg.write_text("model_list:\n  - model_name: m\n    deltallm_params: {model: anthropic/claude}\n"
                   "  - model_name: b\n    deltallm_params: {model: bedrock/x, aws_region_name: us-east-1}\n"
                   "general_settings: {database_url: 'postgresql://u:p@127.0.0.1:1/x'}\n")
    code = ("import sys, deltallm.gunicorn_config, deltallm.cli\n"
            "from deltallm import banner, config\n"
            f"banner.lines(config.load({str(cfg)!r}))\n"
            "print(sorted({'peewee', 'requests', 'urllib3', 'psycopg2', 'psycogreen', 'redis', 'botocore'}\n"
            "             & set(sys.modules)))")
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


def write_config(tmp_path, text):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    return str(cfg)


def test_check_config_reports_typos_below_the_top_level(tmp_path):
    for text, line in [
        ("model_list:\n  - model_name: m\n    deltallm_params: {model: openai/x, api_bse: 'http://h/v1'}\n",
         "model_list[0].deltallm_params.api_bse: unknown key; did you mean 'api_base'?"),
        ("general_settings: {master_kye: sk-x}\n",
         "general_settings.master_kye: unknown key; did you mean 'master_key'?"),
        ("router_settings: {num_retry: 3}\n", "router_settings.num_retry: unknown key; did you mean 'num_retries'?"),
    ]:
        result = run("check-config", "--config", write_config(tmp_path, text), cwd=tmp_path)
        assert result.returncode == 1 and not result.stdout
        assert result.stderr == f"deltallm: config error: {line}\n"


def test_check_config_names_each_ignored_setting(tmp_path):
    cfg = write_config(tmp_path, "model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\n"
                                 "litellm_settings: {callbacks: [langfuse], drop_params: true}\n"
                                 "general_settings: {store_model_in_db: true}\n")
    result = run("check-config", "--config", cfg, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "deltallm: warning: litellm_settings.callbacks: ignored: not supported by DeltaLLM",
        "deltallm: warning: litellm_settings.drop_params: ignored: not supported by DeltaLLM",
        "deltallm: warning: general_settings.store_model_in_db: ignored: not supported by DeltaLLM"]
    assert result.stdout == f"config OK: {cfg}: 1 deployments in 1 model groups, 3 warnings\n"
    assert run("check-config", "--strict", "--config", cfg, cwd=tmp_path).returncode == 1


def test_check_config_without_a_config_file_fails(tmp_path):
    result = run("check-config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (f"deltallm: no config file found: {tmp_path / 'config.yaml'} "
                             "(give --config FILE or set DELTALLM_CONFIG_PATH)\n")


def test_check_config_names_the_missing_bedrock_extra(tmp_path):
    cfg = write_config(tmp_path, "model_list:\n  - model_name: b\n    deltallm_params:\n"
                                 "      {model: bedrock/anthropic.claude, aws_region_name: us-east-1}\n")
    assert run("check-config", "--config", cfg, cwd=tmp_path).returncode == 0
    code = ("import sys; sys.modules['botocore'] = None\n"  # botocore as if not installed
            "from deltallm.cli import main\n"
            f"sys.exit(main(['check-config', '--config', {cfg!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("deltallm: config error: model_list[0].deltallm_params.model: bedrock deployments "
                             "need botocore: pip install 'deltallm[bedrock]'\n")


def test_version():
    from deltallm import __version__
    result = subprocess.run([sys.executable, "-m", "deltallm.cli", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == f"deltallm {__version__}\n"


def serve_argv(monkeypatch, argv, **env):
    """What `deltallm serve` hands to gunicorn."""
    import gunicorn.app.wsgiapp
    from deltallm import cli
    for name in ("PORT", "DELTALLM_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(gunicorn.app.wsgiapp, "run", lambda: sys.argv)
    return cli.main(["serve", *argv])


def test_serve_takes_port_and_host_from_the_environment_and_flags_win(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, "model_list: []\n")
    monkeypatch.setenv("DELTALLM_CONFIG_PATH", cfg)  # cmd_serve sets it; undone after the test
    bind = lambda argv: argv[argv.index("--bind") + 1]  # noqa: E731
    assert bind(serve_argv(monkeypatch, [])) == "0.0.0.0:8000"
    assert bind(serve_argv(monkeypatch, [], PORT="9123", DELTALLM_HOST="127.0.0.1")) == "127.0.0.1:9123"
    assert bind(serve_argv(monkeypatch, ["--port", "9000", "--host", "::1"], PORT="9123",
                           DELTALLM_HOST="127.0.0.1")) == "::1:9000"


def test_serve_with_a_bad_port_variable_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deltallm.cli", "serve"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60, env=dict(os.environ, PORT="eighty"))
    assert result.returncode == 1
    assert result.stderr == "deltallm: config error: PORT: must be a whole number, got 'eighty'\n"


def test_cli_commands_say_which_database_they_use(tmp_path):
    """A relative SQLite path depends on the working directory: each command names the file it used."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    created = run("keys", "create", cwd=elsewhere)
    assert created.returncode == 0, created.stderr
    assert created.stderr.startswith(f"deltallm: database: SQLite file {elsewhere / 'deltallm.db'} "
                                     "(from the default: no database_url, no config file)\n")
    listed = run("keys", "list", cwd=elsewhere)
    assert listed.stderr.startswith(f"deltallm: database: SQLite file {elsewhere / 'deltallm.db'}")
    cfg = write_config(tmp_path, f"general_settings: {{database_url: 'sqlite:///{tmp_path / 'cfg.db'}'}}\n")
    revoked = run("keys", "revoke", "nope", "--config", cfg, cwd=elsewhere)
    assert revoked.stderr.startswith(f"deltallm: database: SQLite file {tmp_path / 'cfg.db'} "
                                     f"(from general_settings.database_url, config {cfg})\n")
    migrated = run("migrate", "--config", cfg, cwd=elsewhere)
    assert migrated.stdout == (f"database ready: SQLite file {tmp_path / 'cfg.db'} "
                               f"(from general_settings.database_url, config {cfg})\n")


def test_cli_honours_database_url_like_the_server(tmp_path, pg_url, monkeypatch):
    """DATABASE_URL overrides the config for the CLI exactly as for the server; no credentials shown."""
    cfg = write_config(tmp_path, f"general_settings: {{database_url: {tmp_path / 'ignored.db'}}}\n")
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    env = dict(os.environ, DATABASE_URL=url)
    created = subprocess.run([sys.executable, "-m", "deltallm.cli", "keys", "create", "--config", cfg],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60, env=env)
    assert created.returncode == 0, created.stderr
    shown = url.replace("postgres:s3cret@", "")
    assert created.stderr.startswith(f"deltallm: database: {shown} (from DATABASE_URL, config {cfg})\n")
    assert "s3cret" not in created.stderr + created.stdout
    assert not (tmp_path / "ignored.db").exists()
    key = created.stdout.strip()
    monkeypatch.setenv("DATABASE_URL", url)  # the server, under the same environment, sees that key
    client = create_app(cfg).test_client()
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
