"""Config loading: YAML, aliases, env substitution, defaults, and one-line errors."""
import subprocess
import sys

import pytest

from deltallm import config
from deltallm.errors import ConfigError
from deltallm.router.registry import ModelRegistry


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_with_aliases_env_and_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "k-123")
    monkeypatch.delenv("DELTALLM_MASTER_KEY", raising=False)
    path = write(tmp_path, """
model_list:
  - model_name: fast
    deltallm_params: {model: groq/llama-3.1-8b, api_key: os.environ/TEST_UPSTREAM_KEY, weight: 3}
  - model_name: fast
    litellm_params: {model: vllm/meta-llama/Llama-3-8B, api_base: http://gpu:8000/v1}
    model_info: {mode: chat, input_cost_per_token: 0.000001}
router_settings: {num_retries: 4, timeout: 30}
litellm_settings: {fallbacks: [{fast: [slow]}]}
general_settings: {master_key: sk-abc}
""")
    settings = config.load(path)
    assert settings.master_key == "sk-abc"
    assert settings.router_settings["num_retries"] == 4
    assert settings.deltallm_settings == {"fallbacks": [{"fast": ["slow"]}]}
    registry = ModelRegistry(settings.model_list, defaults={"timeout": 30})
    first, second = registry.group("fast")
    assert (first.provider, first.model, first.params["api_key"], first.weight) == ("groq", "llama-3.1-8b", "k-123", 3)
    assert (second.provider, second.model) == ("vllm", "meta-llama/Llama-3-8B")
    assert second.params["timeout"] == 30
    assert first.adapter.api_base == "https://api.groq.com/openai/v1"  # the family's default
    assert second.adapter.api_base == "http://gpu:8000/v1"  # overridden
    assert first.id != second.id and first.id == ModelRegistry(settings.model_list, {"timeout": 30}).group("fast")[0].id


def test_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("DELTALLM_MASTER_KEY", "sk-from-env")
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/0")
    settings = config.from_dict({"general_settings": {"master_key": "sk-file"}})
    assert settings.master_key == "sk-from-env" and settings.redis_url == "redis://example:6379/0"


@pytest.mark.parametrize("raw,message", [
    ({"model_list": [{"model_name": "a", "deltallm_params": {"api_key": "x"}}]},
     "model_list[0].deltallm_params.model: Missing data for required field."),
    ({"model_list": [{"model_name": "a"}]}, "model_list[0].deltallm_params: Missing data for required field."),
    ({"model_list": [{"model_name": "a", "deltallm_params": {"model": "nosuch/x"}}]},
     "model_list[0].deltallm_params.model: unknown provider prefix 'nosuch/'"),
    ({"model_list": [{"model_name": "a", "deltallm_params": {"model": "openai/x", "timeout": "soon"}}]},
     "model_list[0].deltallm_params.timeout: Not a valid number."),
    ({"general_settings": {"master_key": "os.environ/DELTALLM_TEST_UNSET"}},
     "general_settings.master_key: environment variable DELTALLM_TEST_UNSET is not set"),
    ({"router_settings": {"routing_strategy": "round-robin"}}, "router_settings.routing_strategy: Must be one of"),
    ({"model_lst": []}, "model_lst: unknown key; did you mean 'model_list'?"),
    ({"model_list": [{"model_name": "a", "deltallm_params": {"model": "azure/dep"}}]},
     "model_list[0].deltallm_params.api_base: azure deployments need"),
    ({"model_list": [{"model_name": "a", "deltallm_params": {"model": "openai/x"}, "model_info": {"mode": "x"}}]},
     "model_list[0].model_info.mode: must be one of"),
])
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_explicit_missing_file_is_an_error_but_default_is_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELTALLM_CONFIG_PATH", raising=False)
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(str(tmp_path / "missing.yaml"))
    assert config.load(None).model_list == []


def test_invalid_yaml_reports_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2, column 18\)"):
        config.load(write(tmp_path, "model_list:\n  - model_name: a: b\n"))


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "deltallm.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_check_config_cli(tmp_path):
    good = write(tmp_path, "model_list:\n  - model_name: m\n    deltallm_params: {model: mock/m}\n")
    result = run_cli("check-config", "--config", good)
    assert result.returncode == 0 and "1 deployments in 1 model groups" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    deltallm_params: {model: nope/m}\n")
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "unknown provider prefix" in result.stderr
    assert "Traceback" not in result.stderr
