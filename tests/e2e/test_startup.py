"""Server start through real gunicorn: one banner from the master, not one per worker; bad configs stop it."""
import os
import subprocess
import sys

from tests.conftest import REDIS_URL, ROOT
from tests.e2e.conftest import running_gateway


def test_banner_and_warnings_are_logged_once_by_the_master(tmp_path):
    config_text = f"""
model_list:
  - model_name: fast
    deltallm_params: {{model: mock/a}}
  - model_name: fast
    litellm_params: {{model: mock/b, temperature: 0.1}}
litellm_settings: {{callbacks: [langfuse]}}
general_settings:
  master_key: sk-banner-master-secret
  database_url: {tmp_path / 'banner.db'}
  redis_url: {REDIS_URL}
"""
    with running_gateway(config_text, tmp_path):  # two workers
        pass
    log = (tmp_path / "gunicorn.log").read_text()
    for line in ["model groups (1): fast (2 deployments)",
                 f"database: SQLite file {tmp_path / 'banner.db'}",
                 f"redis: {REDIS_URL}",
                 "batches: off",
                 "mcp servers: none",
                 "master key: set",
                 "[WARNING] model_list[1].litellm_params.temperature: ignored: not supported by DeltaLLM",
                 "[WARNING] litellm_settings.callbacks: ignored: not supported by DeltaLLM"]:
        assert log.count(line) == 1, (line, log)
    assert log.count("Booting worker") == 2  # the banner above was not repeated by either
    assert "sk-banner-master-secret" not in log


def test_a_typo_stops_gunicorn_with_one_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("general_settings: {master_kye: sk-x}\n")
    env = dict(os.environ, DELTALLM_CONFIG_PATH=str(cfg))
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                             "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "config error: general_settings.master_kye: unknown key; did you mean 'master_key'?" in result.stderr
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr


def test_bedrock_without_botocore_stops_the_start_naming_the_extra(tmp_path):
    """Not a 500 on the first request: the server does not start, and says what to install."""
    hide = tmp_path / "hide"
    hide.mkdir()  # every process of this server sees botocore as not installed
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['botocore'] = None\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model_list:\n  - model_name: b\n    deltallm_params:\n"
                   "      {model: bedrock/anthropic.claude, aws_region_name: us-east-1}\n")
    env = dict(os.environ, DELTALLM_CONFIG_PATH=str(cfg),
               PYTHONPATH=os.pathsep.join([str(hide), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind",
                             "127.0.0.1:0", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert ("config error: model_list[0].deltallm_params.model: bedrock deployments need botocore: "
            "pip install 'deltallm[bedrock]'") in result.stderr
    assert "Booting worker" not in result.stderr
