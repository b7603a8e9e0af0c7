"""`deltallm keys create` with --duration and per-model limits; `deltallm keys list` shows spend."""
import datetime as dt

from deltallm import db, keys as key_module, models
from deltallm.governance.usage import make_record
from deltallm.models import ApiKey, Usage
from tests.test_cli import run

CONFIG = """model_list:
  - model_name: m
    deltallm_params: {{model: mock/m}}
router_settings:
  model_group_alias: {{quick: m}}
general_settings: {{database_url: {db}}}
"""


def setup(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(db=tmp_path / "cli.db"))
    assert run("migrate", "--config", str(cfg), cwd=tmp_path).returncode == 0
    return cfg


def test_create_with_duration_and_model_limits_then_list_shows_spend(tmp_path):
    cfg = setup(tmp_path)
    created = run("keys", "create", "--config", str(cfg), "--models", "m,quick", "--duration", "30d",
                  "--model-rpm", "m=5", "--model-rpm", "quick=7", "--model-tpm", "m=1000", "--max-budget", "10",
                  "--budget-duration", "1mo", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    db.init(str(tmp_path / "cli.db"))
    try:
        with db.connection():
            row = ApiKey.get_by_id(plaintext[len(key_module.KEY_PREFIX):].partition("-")[0])
            assert (row.model_rpm_limit, row.model_tpm_limit) == ({"m": 5, "quick": 7}, {"m": 1000})
            assert abs((row.expires_at - row.created_at) - dt.timedelta(days=30)) < dt.timedelta(seconds=2)
            assert row.budget_period_start == row.created_at
            Usage.insert(make_record(key_id=row.id, model="m", deployment="d", endpoint="/v1/chat/completions",
                                     status=200, spend=1.25)).execute()
    finally:
        db.database.close_all()
    listed = run("keys", "list", "--config", str(cfg), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.strip().splitlines()      # no header when the output is not a terminal
    key_id, hint, _name, allowed, spend, budget, reset_at = line.split("\t")
    assert (key_id, hint, allowed, spend, budget) == (row.id, row.key_hint, "m,quick", "$1.250000", "$10/1mo")
    assert reset_at.startswith(str(models.utcnow().year)[:3]) and reset_at.endswith("Z")
    assert plaintext not in listed.stdout


def test_create_refuses_unknown_models_and_bad_limits(tmp_path):
    cfg = setup(tmp_path)
    for args, message in (
        (["--models", "m,nope"], "unknown model 'nope'"),
        (["--model-rpm", "nope=3"], "unknown model 'nope'"),
        (["--model-tpm", "m"], "--model-tpm wants MODEL=N"),
        (["--model-rpm", "m=-1"], "--model-rpm wants MODEL=N"),
        (["--duration", "30d", "--expires-at", "2099-01-01"], "duration"),
        (["--duration", "0d"], "duration"),
    ):
        result = run("keys", "create", "--config", str(cfg), *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert run("keys", "list", "--config", str(cfg), cwd=tmp_path).stdout == ""
